# @name@'s flake: it only exports the agent's NixOS module. The hive's flake (the meta flake,
# or the operator's) imports `nixosModules.default` into the container's system and sets the
# agent's identity (name, port, sockets); leave this file's outputs as they are.
{
  description = "hivekit agent @name@";

  # Extra flakes the module may use; each reaches agent.nix as `flakeInputs.<name>`:
  # inputs.my-tool.url = "github:someone/my-tool";
  inputs = { };

  outputs =
    { self, ... }@inputs:
    {
      nixosModules.default = {
        imports = [ ./agent.nix ];
        _module.args.flakeInputs = builtins.removeAttrs inputs [ "self" ];
      };
    };
}
