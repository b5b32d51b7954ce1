# hivekit.lib.mkAgent: one agent's NixOS configuration, as the meta flake (plugin meta_flake)
# declares it:
#
#   nixosConfigurations."coder" = hivekit.lib.mkAgent {
#     name = "coder";                                  # the agent's name
#     isManager = false;
#     port = 8123;                                     # its HIVE_PORT
#     module = inputs."agent-coder".nixosModules.default;  # its applied repo's own module
#     env = { HIVE_LABEL = "coder"; HIVE_PORT = "8123"; HIVE_DASHBOARD_PORT = "7000";
#             HIVE_OPERATOR_PRONOUNS = "she/her"; };  # the identity environment
#     git = { name = "coder"; email = "coder@hive.local"; };  # its committer identity
#     # optional: system = "x86_64-linux"; extraModules = [ ];
#   };
#
# Those six arguments are required and the two optional ones are all it takes: Nix itself
# refuses a missing or unknown one, naming it. The result is `nixpkgs.lib.nixosSystem` over
# [ agent-base, the identity, module ] ++ extraModules; nixos-container builds its
# `config.system.build.toplevel` (`nixos-container create|update --flake <meta>#coder`).
{ nixpkgs, agentBase, hivekitFor }:

{ name, isManager, port, module, env, git, system ? "x86_64-linux", extraModules ? [ ] }:

nixpkgs.lib.nixosSystem {
  inherit system;
  modules = [
    agentBase
    {
      hivekit.agent = {
        inherit name isManager port git;
        environment = env;
        package = nixpkgs.lib.mkDefault (hivekitFor system);
      };
    }
    module
  ] ++ extraModules;
}
