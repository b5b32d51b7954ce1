# services.hivekit: the hivekit daemon as a systemd service.
#
#   services.hivekit = {
#     enable = true;
#     plugins = [ "myplugin" ];                       # [hive] enable
#     settings.process.memory = "4G";                 # any plugin's table, merged over [hive]
#   };
#
# The config is rendered by ./settings.nix (pure Nix, shared with the tests) and checked with
# `hivekit config check` at build time, so a bad setting fails the system build, not the boot.
# The operator's CLI finds the daemon through HIVEKIT_CONFIG; run it as root or as the service
# user (the admin socket is 0600).
{ config, lib, pkgs, ... }:

let
  cfg = config.services.hivekit;
  render = import ./settings.nix;
  inherit (render) defaults;
  inherit (lib) mkEnableOption mkIf mkOption optional optionalAttrs types;

  text = render.render {
    inherit (cfg) stateDir runtimeDir backend dashboardPort settings;
    enable = cfg.plugins;
    disable = cfg.disabledPlugins;
  };
  unchecked = pkgs.writeText "hivekit.toml" text;
  checked = pkgs.runCommand "hivekit.toml" { nativeBuildInputs = [ cfg.package ]; } ''
    # Paths in the config may not exist in the build sandbox; the check is of the settings.
    HOME=$TMPDIR hivekit --config ${unchecked} config check
    cp ${unchecked} $out
  '';
  dedicatedUser = cfg.user != "root";
in
{
  options.services.hivekit = {
    enable = mkEnableOption "hivekit, a control plane for a hive of AI agents";

    package = mkOption {
      type = types.package;
      description = "The hivekit package (the flake's nixosModules.hivekit sets its own).";
    };

    backend = mkOption {
      type = types.str;
      default = defaults.backend;
      description = ''
        The backend plugin ([hive] backend). "process" runs agents as sandboxed child
        processes of the daemon; "nixos_container" needs `user = "root"`.
      '';
    };

    plugins = mkOption {
      type = types.listOf types.str;
      default = defaults.enable;
      description = "Plugins to enable on top of the defaults ([hive] enable).";
    };

    disabledPlugins = mkOption {
      type = types.listOf types.str;
      default = defaults.disable;
      description = "Default plugins to turn off ([hive] disable).";
    };

    stateDir = mkOption {
      type = types.str;
      default = defaults.stateDir;
      description = "Where everything durable lives: hive.db, the agents' repos, notes and creds.";
    };

    runtimeDir = mkOption {
      type = types.str;
      default = defaults.runtimeDir;
      description = "Sockets (admin.sock, agents/<n>/hive.sock). Keep it short: 107-byte limit.";
    };

    dashboardPort = mkOption {
      type = types.port;
      default = defaults.dashboardPort;
      description = "The dashboard's TCP port ([hive] dashboard_port, HIVE_DASHBOARD_PORT).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the dashboard port in the firewall.";
    };

    settings = mkOption {
      type = types.attrsOf (types.attrsOf types.anything);
      default = defaults.settings;
      example = lib.literalExpression ''{ hive.operator_pronouns = "they/them"; process.memory = "4G"; }'';
      description = ''
        The rest of hivekit.toml: one attribute set per table ([hive] and each plugin's),
        merged over what the options above set.
      '';
    };

    user = mkOption {
      type = types.str;
      default = "hivekit";
      description = ''
        The user the daemon (and, with the process backend, its agents) runs as. The default
        user is created; "root" is needed by backends that manage containers, and turns the
        service hardening below off.
      '';
    };

    group = mkOption {
      type = types.str;
      default = "hivekit";
      description = "The daemon's group.";
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "Programs on the daemon's PATH, and so on its process agents' PATH.";
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = "Run `hivekit config check` on the rendered config when building it.";
    };

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      description = "The rendered hivekit.toml (HIVEKIT_CONFIG of the service and the CLI).";
    };
  };

  config = mkIf cfg.enable {
    services.hivekit.configFile = if cfg.checkConfig then checked else unchecked;

    users.users = optionalAttrs (cfg.user == "hivekit") {
      hivekit = {
        isSystemUser = true;
        inherit (cfg) group;
        home = cfg.stateDir;
      };
    };
    users.groups = optionalAttrs (cfg.group == "hivekit") { hivekit = { }; };

    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0750 ${cfg.user} ${cfg.group} - -"
      "d ${cfg.runtimeDir} 0750 ${cfg.user} ${cfg.group} - -"
    ];

    environment.systemPackages = [ cfg.package ];
    environment.variables.HIVEKIT_CONFIG = "${cfg.configFile}";

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ cfg.dashboardPort ];

    systemd.services.hivekit = {
      description = "hivekit: a control plane for a hive of AI agents";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment.HIVEKIT_CONFIG = "${cfg.configFile}";
      path = [ cfg.package pkgs.git ]
        ++ optional (cfg.backend == "process") pkgs.bubblewrap
        ++ cfg.extraPackages;
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/hivekit serve";
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = cfg.stateDir;
        Restart = "on-failure";
        RestartSec = 5;
        # SIGTERM to the daemon alone: it stops its agents itself (SIGTERM, then SIGKILL after
        # [process] stop_timeout); systemd SIGKILLs whatever is left after TimeoutStopSec.
        KillMode = "mixed";
        TimeoutStopSec = 60;
        UMask = "0077";
        # A socket per agent and a long-poll from each: a full hive needs far more than the
        # default soft limit of 1024 open files.
        LimitNOFILE = 65536;
      } // optionalAttrs (cfg.backend == "process") {
        # The process backend puts each agent in a cgroup of its own for [process] memory and
        # cpus: the unit's cgroup is the daemon's to manage.
        Delegate = "cpu memory";
      } // optionalAttrs dedicatedUser {
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = [ cfg.stateDir cfg.runtimeDir ];
        # An empty /home rather than an inaccessible one.
        ProtectHome = "tmpfs";
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        # A delegated cgroup tree must stay writable (the process backend's agents' limits).
        ProtectControlGroups = cfg.backend != "process";
        ProtectClock = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
        # Deliberately not set: RestrictNamespaces, PrivateUsers and SystemCallFilter would stop
        # bubblewrap from building its sandboxes; MemoryDenyWriteExecute would break agents that
        # run a JIT (node, for one).
      };
    };
  };
}
