# nix/agent-base.nix evaluated offline with stub-lib.nix, for one agent whose module sets
# `hivekit.agent.health = <health>` (every option not set takes its declared default): what the
# container's /etc/hive/health.json holds, as the module renders it.
{ health ? { } }:
let
  lib = import ./stub-lib.nix;
  pkgs = { writeShellScript = name: _text: "/nix/store/stub-${name}"; git = "/nix/store/stub-git"; };
  utils.escapeSystemdExecArgs = builtins.concatStringsSep " ";
  options = evaluated.options.hivekit.agent;
  config.hivekit.agent = {
    name = "coder"; port = 8123; isManager = false; package = "/nix/store/stub-hivekit";
    command = [ "hivekit" "harness" ]; environment = { }; notesDir = "/agents/coder/state";
    git = { name = "coder"; email = "coder@hive.local"; };
    health = builtins.mapAttrs (name: opt: health.${name} or opt.default) options.health;
  };
  evaluated = import ../../nix/agent-base.nix { inherit lib pkgs utils config; };
in
{
  healthJson = evaluated.config.environment.etc."hive/health.json".text;
  healthOptions = builtins.attrNames options.health;
}
