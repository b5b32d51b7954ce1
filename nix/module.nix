# services.hivekit: the hivekit daemon as a systemd service, to nixpkgs' module conventions.
#
#   services.hivekit = {
#     enable = true;
#     settings.hive.enable = [ "meta_flake" ];        # hivekit.toml, one attrset per table
#     settings.process.memory = "4G";
#     operatorGroup = "hivekit-operators";           # may use the admin socket (the CLI)
#     credentials.dashboard-token = "/run/secrets/hivekit-dashboard-token";
#   };
#
# `settings` is typed with pkgs.formats.toml and rendered by it; the result is checked with
# `hivekit config check` at build time, so a bad setting fails the system build, not the boot.
# The state and runtime dirs come from settings.hive.state_dir / runtime_dir alone: systemd's
# StateDirectory=/RuntimeDirectory= make the defaults, tmpfiles and ReadWritePaths= any other.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.hivekit;
  settingsFormat = pkgs.formats.toml { };
  inherit (lib)
    literalExpression mkEnableOption mkIf mkOption mkRenamedOptionModule optional
    optionalAttrs optionals types;

  defaultStateDir = "/var/lib/hivekit";
  defaultRuntimeDir = "/run/hivekit";
  # Owner everything, the service's group may look, others nothing (hivekit keeps it so).
  dirMode = "0750";
  # systemd's $CREDENTIALS_DIRECTORY for this unit (systemd.exec(5), "Credentials").
  credentialsDir = "/run/credentials/hivekit.service";
  # An agent's socket, <runtime_dir>/agents/<9 characters>/hive.sock, is bound through a
  # staging name 11 bytes longer than its dir: 28 bytes past runtime_dir, within sun_path's 107.
  maxRuntimeDir = 107 - 28;

  hive = cfg.settings.hive;
  stateDir = hive.state_dir;
  runtimeDir = hive.runtime_dir;
  # systemd makes (and hands to the service's user) the default dirs; any other is made by
  # tmpfiles and opened with ReadWritePaths= (ProtectSystem=strict makes the rest read-only).
  stateByUnit = stateDir == defaultStateDir;
  runtimeByUnit = runtimeDir == defaultRuntimeDir;
  dashboard = cfg.settings.dashboard or { };
  dashboardPort = dashboard.port or hive.dashboard_port;
  containers = hive.backend == "nixos_container";
  dedicatedUser = cfg.user != "root";

  # What the module adds to the operator's settings (the operator's own values win).
  derived =
    optionalAttrs (cfg.operatorGroup != null) { hive.operator_group = cfg.operatorGroup; }
    // optionalAttrs (cfg.credentials ? dashboard-token) {
      dashboard.token_file = "${credentialsDir}/dashboard-token";
    }
    // optionalAttrs containers {
      # The host's nixos-container, built for its own container dirs (virtualisation/
      # nixos-containers.nix puts it in environment.systemPackages).
      nixos_container.nixos_container = "/run/current-system/sw/bin/nixos-container";
    };
  finalSettings = lib.recursiveUpdate derived cfg.settings;

  unchecked = settingsFormat.generate "hivekit.toml" finalSettings;
  checked = pkgs.runCommand "hivekit.toml" { nativeBuildInputs = [ cfg.package ]; } ''
    # Paths in the config may not exist in the build sandbox; the check is of the settings.
    HOME=$TMPDIR hivekit --config ${unchecked} config check
    cp ${unchecked} $out
  '';

  dirOption = default: description: mkOption {
    type = types.str;
    inherit default description;
  };
  renamed = from: to: mkRenamedOptionModule [ "services" "hivekit" from ] ([ "services" "hivekit" "settings" "hive" ] ++ to);
in
{
  imports = [
    (renamed "stateDir" [ "state_dir" ])
    (renamed "runtimeDir" [ "runtime_dir" ])
    (renamed "backend" [ "backend" ])
    (renamed "plugins" [ "enable" ])
    (renamed "disabledPlugins" [ "disable" ])
    (renamed "dashboardPort" [ "dashboard_port" ])
  ];

  options.services.hivekit = {
    enable = mkEnableOption "hivekit, a control plane for a hive of AI agents";

    package = lib.mkPackageOption pkgs "hivekit" {
      extraDescription = "The flake's nixosModules.hivekit makes the flake's own package the default.";
    };

    settings = mkOption {
      default = { };
      description = ''
        hivekit.toml: one attribute set per table, [hive] and each plugin's (see hivekit's
        README and each plugin's). Rendered with pkgs.formats.toml; checked with
        `hivekit config check` when built (services.hivekit.checkConfig).
      '';
      example = literalExpression ''
        {
          hive.enable = [ "meta_flake" ];
          hive.operator_pronouns = "they/them";
          process.memory = "4G";
          dashboard.allow_remote = true;
        }
      '';
      type = types.submodule {
        freeformType = settingsFormat.type;
        options.hive = mkOption {
          default = { };
          description = "The [hive] table.";
          type = types.submodule {
            freeformType = settingsFormat.type;
            options = {
              state_dir = dirOption defaultStateDir ''
                Everything durable: hive.db, the agents' repos, notes and creds. The default is
                the unit's StateDirectory=; any other is made by tmpfiles.
              '';
              runtime_dir = dirOption defaultRuntimeDir ''
                The sockets (admin.sock, agents/<n>/hive.sock): at most ${toString maxRuntimeDir}
                characters. The default is the unit's RuntimeDirectory= (kept across restarts:
                agents bind their socket dirs); any other is made by tmpfiles.
              '';
              backend = mkOption {
                type = types.str;
                default = "process";
                description = ''
                  The backend plugin. "process" runs agents as sandboxed child processes of the
                  daemon; "nixos_container" runs NixOS containers and needs `user = "root"`.
                '';
              };
              enable = mkOption {
                type = types.listOf types.str;
                default = [ ];
                description = "Plugins on top of the defaults (e.g. meta_flake, forge).";
              };
              disable = mkOption {
                type = types.listOf types.str;
                default = [ ];
                description = "Default plugins to turn off.";
              };
              dashboard_port = mkOption {
                type = types.port;
                default = 7000;
                description = "The dashboard's TCP port (HIVE_DASHBOARD_PORT for agents).";
              };
            };
          };
        };
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the dashboard's port in the firewall. The dashboard listens on loopback unless
        settings.dashboard.allow_remote is set, so this needs it (an assertion says so).
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/hivekit.env";
      description = ''
        EnvironmentFile= of the service: KEY=VALUE lines read by systemd (as root, so the file
        may be root's alone) into the daemon's environment, e.g.
        `NIX_CONFIG=access-tokens = github.com=…` for a private hivekit flake. Not in the store.
      '';
    };

    credentials = mkOption {
      type = types.attrsOf types.path;
      default = { };
      example = literalExpression ''{ dashboard-token = "/run/secrets/hivekit-dashboard-token"; }'';
      description = ''
        LoadCredential= of the service: each file is readable by the daemon alone, as
        ${credentialsDir}/<name>. `dashboard-token` becomes the dashboard's access token
        (settings.dashboard.token_file). Files stay out of the store.
      '';
    };

    operatorGroup = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "hivekit-operators";
      description = ''
        A group whose members may use the admin socket, and so the hivekit CLI: the daemon
        gives admin.sock mode 0660 and this group, and the runtime dir this group and 0750
        ([hive] operator_group). The group is created; add operators to it with
        users.users.<name>.extraGroups. Agents' sockets stay the daemon's alone.
      '';
    };

    user = mkOption {
      type = types.str;
      default = "hivekit";
      description = ''
        The user the daemon (and, with the process backend, its agents) runs as. The default
        user is created; "root" is needed by the nixos_container backend, and turns the service
        hardening off.
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

    assertions = [
      {
        assertion = cfg.openFirewall -> (dashboard.allow_remote or false);
        message = ''
          services.hivekit.openFirewall opens port ${toString dashboardPort}, but the dashboard
          listens on loopback only: set services.hivekit.settings.dashboard.allow_remote = true
          (and put TLS in front of it), or drop openFirewall.
        '';
      }
      {
        assertion = cfg.openFirewall -> !(builtins.elem "dashboard" hive.disable);
        message = ''
          services.hivekit.openFirewall opens the dashboard's port, but
          settings.hive.disable turns the dashboard off.
        '';
      }
      {
        assertion = containers -> cfg.user == "root";
        message = ''
          services.hivekit: the nixos_container backend creates and runs NixOS containers,
          which takes root: set services.hivekit.user = "root".
        '';
      }
      {
        assertion = containers -> (config.boot.enableContainers or true);
        message = "services.hivekit: the nixos_container backend needs boot.enableContainers = true.";
      }
      {
        assertion = lib.hasPrefix "/" stateDir && lib.hasPrefix "/" runtimeDir;
        message = ''
          services.hivekit.settings.hive.state_dir and runtime_dir must be absolute paths
          (got ${stateDir} and ${runtimeDir}).
        '';
      }
      {
        assertion = builtins.stringLength runtimeDir <= maxRuntimeDir;
        message = ''
          services.hivekit.settings.hive.runtime_dir ${runtimeDir} is too long: agents'
          sockets (<runtime_dir>/agents/<name>/hive.sock) must fit in 107 bytes; use a path of
          at most ${toString maxRuntimeDir} characters.
        '';
      }
      {
        assertion = cfg.operatorGroup == null || (hive.operator_group or cfg.operatorGroup) == cfg.operatorGroup;
        message = ''
          services.hivekit.operatorGroup (${toString cfg.operatorGroup}) and
          settings.hive.operator_group (${toString (hive.operator_group or "")}) disagree: set one.
        '';
      }
    ];

    users.users = optionalAttrs (cfg.user == "hivekit") {
      hivekit = {
        isSystemUser = true;
        inherit (cfg) group;
        home = stateDir;
      };
    };
    users.groups = optionalAttrs (cfg.group == "hivekit") { hivekit = { }; }
      // optionalAttrs (cfg.operatorGroup != null) { ${cfg.operatorGroup} = { }; };

    systemd.tmpfiles.rules =
      optional (!stateByUnit) "d '${stateDir}' ${dirMode} ${cfg.user} ${cfg.group} - -"
      ++ optional (!runtimeByUnit) "d '${runtimeDir}' ${dirMode} ${cfg.user} ${cfg.group} - -";

    environment.systemPackages = [ cfg.package ];
    environment.variables.HIVEKIT_CONFIG = "${cfg.configFile}";

    networking.firewall.allowedTCPPorts = optional cfg.openFirewall dashboardPort;

    systemd.services.hivekit = {
      description = "hivekit: a control plane for a hive of AI agents";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment.HIVEKIT_CONFIG = "${cfg.configFile}";
      path = [ cfg.package pkgs.git ]
        ++ optional (hive.backend == "process") pkgs.bubblewrap
        # meta_flake locks the meta flake with nix.
        ++ optional (builtins.elem "meta_flake" hive.enable) config.nix.package
        # What nixos-container.pl runs: nix build and nix-env (builds, profiles), systemctl and
        # machinectl (start/stop, run), nsenter/umount/mountpoint, find, rm and chattr (destroy).
        ++ optionals containers [
          config.nix.package config.systemd.package pkgs.util-linux pkgs.coreutils
          pkgs.findutils pkgs.e2fsprogs
        ]
        ++ cfg.extraPackages;
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/hivekit serve";
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = stateDir;
        StateDirectory = mkIf stateByUnit "hivekit";
        StateDirectoryMode = mkIf stateByUnit dirMode;
        RuntimeDirectory = mkIf runtimeByUnit "hivekit";
        RuntimeDirectoryMode = mkIf runtimeByUnit dirMode;
        # Agents' containers and sandboxes bind <runtime_dir>/agents/<n>: a restart of the
        # daemon must not delete the dirs under them.
        RuntimeDirectoryPreserve = mkIf runtimeByUnit "yes";
        EnvironmentFile = mkIf (cfg.environmentFile != null) cfg.environmentFile;
        LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;
        # So that a daemon that is not root may give admin.sock to the operator group.
        SupplementaryGroups = optional (cfg.operatorGroup != null) cfg.operatorGroup;
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
      } // optionalAttrs (hive.backend == "process") {
        # The process backend puts each agent in a cgroup of its own for [process] memory and
        # cpus: the unit's cgroup is the daemon's to manage.
        Delegate = "cpu memory";
      } // optionalAttrs dedicatedUser {
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = optional (!stateByUnit) stateDir ++ optional (!runtimeByUnit) runtimeDir;
        # An empty /home rather than an inaccessible one.
        ProtectHome = "tmpfs";
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        # A delegated cgroup tree must stay writable (the process backend's agents' limits).
        ProtectControlGroups = hive.backend != "process";
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
