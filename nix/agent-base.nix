# The base of every agent's NixOS container: identity, the harness service, git.
# hivekit.lib.mkAgent imports it before the agent's own module and sets hivekit.agent.*.
#
# The nixos_container backend binds the agent's socket dir at /run/hive (HIVE_SOCKET =
# /run/hive/hive.sock), its notes at `notesDir` (/state for the manager, /agents/<n>/state for
# the others), its creds at [nixos_container] creds_mount, <state_dir>/shared at /shared.
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
    git = {
      name = mkOption {
        type = types.str;
        default = cfg.name;
        defaultText = lib.literalExpression "config.hivekit.agent.name";
        description = "The agent's git committer name.";
      };
      email = mkOption {
        type = types.str;
        default = "${cfg.name}@hive.local";
        defaultText = lib.literalExpression ''"''${name}@hive.local"'';
        description = "The agent's git committer email.";
      };
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
      description = ''
        The agent's environment from the hive: HIVE_DASHBOARD_PORT, HIVE_OPERATOR_PRONOUNS and
        the rest of its identity (HIVE_LABEL, HIVE_PORT, HIVE_SOCKET, HIVE_NOTES and HIVE_SHARED
        are set from the options here and win).
      '';
    };
    notesDir = mkOption {
      type = types.str;
      # Where the nixos_container backend binds them.
      default = if cfg.isManager then "/state" else "/agents/${cfg.name}/state";
      defaultText = lib.literalExpression
        ''if isManager then "/state" else "/agents/''${name}/state"'';
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
      config.user = { inherit (cfg.git) name email; };
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
