# @name@'s own NixOS module: what its container runs on top of the hive's base system.
#
# Edit it, commit, and ask the operator to apply the commit. hivekit builds the container
# from the applied copy and restarts it; a build error comes back in the approval's
# failed/<id> tag, and the running container keeps its previous config.
{ config, pkgs, lib, ... }:
{
  # Packages on the agent's PATH:
  # environment.systemPackages = with pkgs; [ ripgrep jq ];

  # More modules, from this repository:
  # imports = [ ./extra.nix ];

  # A flake input declared in flake.nix (`inputs.my-tool.url = "github:…";`) is available
  # here as `flakeInputs.<name>`; add `flakeInputs` to the arguments above, then:
  # environment.systemPackages = [ flakeInputs.my-tool.packages.${pkgs.system}.default ];
  # imports = [ flakeInputs.my-tool.nixosModules.default ];

  # A service of its own:
  # systemd.services.my-tool = {
  #   wantedBy = [ "multi-user.target" ];
  #   serviceConfig.ExecStart = "${pkgs.hello}/bin/hello";
  # };
}
