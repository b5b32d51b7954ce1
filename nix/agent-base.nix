# The base of every agent's NixOS container: identity, the harness service, git.
# hivekit.lib.mkAgent imports it before the agent's own module and sets hivekit.agent.*.
#
# The nixos_container backend binds the agent's socket dir at /run/hive, its notes at `notesDir`
# (/state for the manager, /agents/<n>/state for the others), its creds at [nixos_container]
# creds_mount, <state_dir>/shared at /shared, and writes the agent's identity environment (every
# HIVE_* variable, defined once in hivekit's hivekit/identity.py) to /run/hive/identity.env,
# which the agent's service reads as its EnvironmentFile: nothing here defines a HIVE_* value.
{ config, lib, pkgs, utils, ... }:

let
  cfg = config.hivekit.agent;
  inherit (lib) mkDefault mkOption types;
  # The agent's credential keys as its environment, then its command (./with-creds.sh).
  withCreds = pkgs.writeShellScript "hive-agent-with-creds" (builtins.readFile ./with-creds.sh);
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
        Environment the meta flake bakes into the agent's service (the identity values that do
        not depend on where the backend binds things). The backend's /run/hive/identity.env
        is read after it and wins.
      '';
    };
    health = {
      # How a deploy proves the agent runs on its new config (hivekit's `verify` step, after
      # every build): the nixos_container backend reads these from the built system's
      # /etc/hive/health.json. Each unset one is null: the hive's own default.
      timeout = mkOption {
        type = types.nullOr types.numbers.positive;
        default = null;
        description = "Seconds a deploy waits for the agent to become healthy ([hive] health_timeout).";
      };
      settle = mkOption {
        type = types.nullOr types.numbers.positive;
        default = null;
        description = "Seconds the agent must run without a restart after its build ([nixos_container] health_settle).";
      };
      http = mkOption {
        type = types.nullOr (types.strMatching "/[^[:space:]]*");
        default = null;
        example = "/healthz";
        description = "A path on the agent's port (HIVE_PORT) that must answer 2xx to a GET.";
      };
      command = mkOption {
        type = types.nullOr (types.nonEmptyListOf types.str);
        default = null;
        example = [ "curl" "-fsS" "http://127.0.0.1:8123/ready" ];
        description = "A command run in the container (nixos-container run) that must exit 0.";
      };
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
    # Read from the host by the nixos_container backend's health check (<system>/etc/...).
    environment.etc."hive/health.json".text = builtins.toJSON cfg.health;
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
      environment = cfg.environment;
      serviceConfig = {
        # Written by the backend before every start; it overrides `environment` (systemd reads
        # EnvironmentFile= after Environment=), so no `environment` setting can shadow the identity.
        EnvironmentFile = "/run/hive/identity.env";
        # Each `hivekit creds NAME set KEY` reaches the command as $KEY (read from
        # $HIVE_CREDS/env at every start), as on the process backend.
        ExecStart = utils.escapeSystemdExecArgs ([ "${withCreds}" ] ++ cfg.command);
        WorkingDirectory = cfg.notesDir;
        Restart = "always";
        RestartSec = 2;
      };
    };
  };
}
