# hivekit packaged for Nix: the package, the NixOS service, and what the meta flake builds
# agents from. The flake lives in nix/ and builds the repository around it, so refer to it as
# `git+file:///path/to/hivekit?dir=nix` (or a forge URL with `?dir=nix`).
{
  description = "hivekit: a control plane for a hive of AI agents";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      hivekitFor = system: self.packages.${system}.hivekit;
      # This flake as a flake reference, for the meta flake's `hivekit` input: agents are built
      # with the hivekit the host runs, and upgrading it moves the input ("needs update").
      selfRef = "path:${self.sourceInfo.outPath}?dir=nix";
    in
    {
      packages = forAllSystems (pkgs: rec {
        hivekit = pkgs.python3Packages.callPackage ./package.nix { src = ../.; };
        default = hivekit;
      });

      overlays.default = final: _prev: {
        hivekit = final.python3Packages.callPackage ./package.nix { src = ../.; };
      };

      nixosModules = {
        # services.hivekit, with this flake's package (and, for meta_flake, this flake) as the
        # defaults.
        hivekit = { config, lib, pkgs, ... }: {
          imports = [ ./module.nix ];
          services.hivekit.package = lib.mkDefault (hivekitFor pkgs.stdenv.hostPlatform.system);
          services.hivekit.settings.meta_flake = lib.mkIf
            (builtins.elem "meta_flake" config.services.hivekit.settings.hive.enable)
            { hivekit_flake = lib.mkDefault selfRef; };
        };
        # The base of every agent's container (hivekit.agent.*); mkAgent imports it.
        agent-base = { lib, pkgs, ... }: {
          imports = [ ./agent-base.nix ];
          hivekit.agent.package = lib.mkDefault (hivekitFor pkgs.stdenv.hostPlatform.system);
        };
        default = self.nixosModules.hivekit;
      };

      lib.mkAgent = import ./mk-agent.nix {
        inherit nixpkgs hivekitFor;
        agentBase = ./agent-base.nix;
      };

      # What can be checked without running anything: the package builds (and imports), its
      # dependencies are pyproject.toml's, and the NixOS module evaluates with its assertions
      # holding and its rendered config passing `hivekit config check`, for the defaults and
      # for a container host with non-default dirs, secrets and an operator group.
      checks = forAllSystems (pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          evalModule = settings: (lib.nixosSystem {
            inherit system;
            modules = [
              self.nixosModules.hivekit
              {
                boot.isContainer = true;
                system.stateVersion = "24.11";
                services.hivekit = { enable = true; } // settings;
              }
            ];
          }).config;
          moduleCheck = name: settings:
            let
              config = evalModule settings;
              failed = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
            in
            pkgs.runCommand "hivekit-module-${name}" {
              failed = builtins.toJSON failed;
              # Forces the unit's evaluation and the rendered, checked config.
              unit = config.systemd.units."hivekit.service".unit;
              inherit (config.services.hivekit) configFile;
            } ''
              if [ "$failed" != "[]" ]; then echo "failed assertions: $failed" >&2; exit 1; fi
              cp "$configFile" $out
            '';
          pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);
          wanted = map (dep: builtins.head (builtins.match "([A-Za-z0-9_.-]+).*" dep))
            pyproject.project.dependencies;
          packaged = map (p: p.pname) (hivekitFor system).dependencies;
        in
        {
          package = hivekitFor system;
          package-dependencies = pkgs.runCommand "hivekit-package-dependencies" {
            wanted = builtins.toJSON (lib.sort lib.lessThan wanted);
            packaged = builtins.toJSON (lib.sort lib.lessThan packaged);
          } ''
            if [ "$wanted" != "$packaged" ]; then
              echo "pyproject.toml wants $wanted, nix/package.nix has $packaged" >&2; exit 1
            fi
            touch $out
          '';
          module-defaults = moduleCheck "defaults" { };
          module-containers = moduleCheck "containers" {
            user = "root";
            operatorGroup = "hivekit-operators";
            credentials.dashboard-token = "/run/secrets/hivekit-dashboard-token";
            environmentFile = "/run/secrets/hivekit.env";
            settings.hive = {
              backend = "nixos_container";
              enable = [ "meta_flake" "forge" ];
              state_dir = "/srv/hive";
              runtime_dir = "/run/hive-sockets";
            };
          };
        });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.python3 pkgs.git pkgs.bubblewrap pkgs.ruff ];
        };
      });
    };
}
