# The base of every agent's NixOS container: identity, the harness service, git.
# hivekit.lib.mkAgent imports it before the agent's own module and sets hivekit.agent.*.
#
# The container backend binds, as the reference daemon did: the agent's socket dir at
# /run/hive (HIVE_SOCKET = /run/hive/hive.sock), its notes at `notesDir`, its creds at
# /root/.claude, <state_dir>/shared at /shared.
{ config, lib, pkgs, utils, ... }:

let
  cfg = config.hivekit.agent;
  inherit (lib) mkDefault mkOption types;
in
{
  options.hivekit.agent = {
    name = mkOption {
      type = types.strMatching "[a-z][a-z0-9-]{0,8}";
      description = "The agent's name (HIVE_LABEL).";
    };
    port = mkOption {
      type = types.port;
      description = "The agent's web port (HIVE_PORT), given by the hive.";
    };
    isManager = mkOption {
      type = types.bool;
      default = false;
      description = "Whether this is the manager.";
    };
    dashboardPort = mkOption {
      type = types.port;
      default = 7000;
      description = "The dashboard's port (HIVE_DASHBOARD_PORT).";
    };
    operatorPronouns = mkOption {
      type = types.str;
      default = "she/her";
      description = "How the agent refers to the operator (HIVE_OPERATOR_PRONOUNS).";
    };
    package = mkOption {
      type = types.package;
      description = "hivekit, whose harness the agent runs by default.";
    };
    command = mkOption {
      type = types.listOf types.str;
      default = [ "${cfg.package}/bin/hivekit" "harness" ];
      defaultText = lib.literalExpression ''[ "''${hivekit}/bin/hivekit" "harness" ]'';
      description = "What the agent runs (restarted when it exits).";
    };
    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Extra environment for the agent (the identity variables win).";
    };
    notesDir = mkOption {
      type = types.str;
      default = "/state";
      description = "Where the backend binds the agent's notes (HIVE_NOTES, its working dir).";
    };
  };

  config = {
    boot.isContainer = true;
    networking.hostName = mkDefault (if cfg.isManager then cfg.name else "h-${cfg.name}");
    networking.useDHCP = false;
    system.stateVersion = mkDefault "24.11";

    environment.systemPackages = [ cfg.package pkgs.git ];
    programs.git = {
      enable = true;
      config.user = {
        name = cfg.name;
        email = "${cfg.name}@hive";
      };
    };

    systemd.services.hive-agent = {
      description = "hivekit agent ${cfg.name}";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      # The agent's own module adds packages system-wide; the harness sees them all.
      path = [ "/run/current-system/sw" ];
      environment = cfg.environment // {
        HIVE_LABEL = cfg.name;
        HIVE_PORT = toString cfg.port;
        HIVE_SOCKET = "/run/hive/hive.sock";
        HIVE_DASHBOARD_PORT = toString cfg.dashboardPort;
        HIVE_OPERATOR_PRONOUNS = cfg.operatorPronouns;
        HIVE_NOTES = cfg.notesDir;
        HIVE_SHARED = "/shared";
      };
      serviceConfig = {
        ExecStart = utils.escapeSystemdExecArgs cfg.command;
        WorkingDirectory = cfg.notesDir;
        Restart = "always";
        RestartSec = 2;
      };
    };
  };
}
