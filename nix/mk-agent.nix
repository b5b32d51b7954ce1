# hivekit.lib.mkAgent: one agent's NixOS configuration, as the meta flake declares it:
#
#   nixosConfigurations.coder = hivekit.lib.mkAgent {
#     name = "coder";                                  # required: the agent's name
#     module = inputs.agent-coder.nixosModules.default;  # required: its applied repo's module
#     port = 8123;                                     # required: its HIVE_PORT
#     isManager = false;                               # default false
#     dashboardPort = 7000;                            # default 7000
#     operatorPronouns = "she/her";                    # default "she/her"
#     system = "x86_64-linux";                         # default "x86_64-linux"
#     extraModules = [ ];                              # default [ ]: appended after `module`
#   };
#
# The identity (port, isManager, dashboardPort, operatorPronouns) may also come grouped as
# `identity = { port = 8123; ... }`; a key given directly wins over the same key there. Any
# other argument is an error naming it. The result is `nixpkgs.lib.nixosSystem { ... }`
# (system, modules = [ agent-base, identity, module ] ++ extraModules); nixos-container builds
# its `config.system.build.toplevel` (`nixos-container create|update --flake meta#coder`).
{ nixpkgs, agentBase, hivekitFor }:

args:
let
  identityKeys = [ "port" "isManager" "dashboardPort" "operatorPronouns" ];
  known = [ "name" "module" "identity" "system" "extraModules" ] ++ identityKeys;
  unknown = builtins.filter (k: !builtins.elem k known) (builtins.attrNames args);
  missing = builtins.filter (k: !(args ? ${k})) [ "name" "module" ];
  system = args.system or "x86_64-linux";
  identity = (args.identity or { }) // builtins.intersectAttrs
    (builtins.listToAttrs (map (k: { name = k; value = null; }) identityKeys)) args;
  badIdentity = builtins.filter (k: !builtins.elem k identityKeys) (builtins.attrNames identity);
in
if unknown != [ ] then
  throw "hivekit.lib.mkAgent: unknown argument(s) ${toString unknown}; it takes ${toString known}"
else if missing != [ ] then
  throw "hivekit.lib.mkAgent: missing argument(s) ${toString missing}"
else if badIdentity != [ ] then
  throw "hivekit.lib.mkAgent: unknown identity key(s) ${toString badIdentity}; it takes ${toString identityKeys}"
else if !(identity ? port) then
  throw "hivekit.lib.mkAgent: ${args.name} needs a port (its HIVE_PORT)"
else
  nixpkgs.lib.nixosSystem {
    inherit system;
    modules = [
      agentBase
      {
        hivekit.agent = identity // {
          inherit (args) name;
          package = nixpkgs.lib.mkDefault (hivekitFor system);
        };
      }
      args.module
    ] ++ (args.extraModules or [ ]);
  }
