# hivekit packaged for Nix: the package, the NixOS service, and what the meta flake builds
# agents from. The flake lives in nix/ and builds the repository around it, so refer to it as
# `git+file:///path/to/hivekit?dir=nix` (or a forge URL with `?dir=nix`).
{
  description = "hivekit: a control plane for a hive of AI agents";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      hivekitFor = system: self.packages.${system}.hivekit;
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
        # services.hivekit, with this flake's package as the default.
        hivekit = { lib, pkgs, ... }: {
          imports = [ ./module.nix ];
          services.hivekit.package = lib.mkDefault (hivekitFor pkgs.stdenv.hostPlatform.system);
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

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.python3 pkgs.git pkgs.bubblewrap pkgs.ruff ];
        };
      });
    };
}
