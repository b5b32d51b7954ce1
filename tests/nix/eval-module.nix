# nix/module.nix evaluated offline with stub-lib.nix: `services` is what an operator sets under
# services.hivekit; the result is the module's option values (defaults under what was set,
# submodules option by option) and its `config` with mkIf/mkMerge/mkDefault resolved. What the
# module hands to pkgs.formats.toml's `generate` is `tomlValue` (the tests render it with
# remarshal's json2toml, as nixpkgs does, and run `hivekit config check` on it).
{ services ? { }, host ? { } }:
let
  lib = import ./stub-lib.nix;
  package = name: { pname = name; outPath = "/nix/store/stub-${name}"; };
  pkgs = {
    formats.toml = { }: {
      type = { stubKind = "toml-value"; };
      generate = name: value: { outPath = "/nix/store/stub-generated-${name}"; inherit value; };
    };
    runCommand = name: env: script: { outPath = "/nix/store/stub-run-${name}";
                                      inherit env script; };
    hivekit = package "hivekit";
  } // lib.mapAttrs (name: _: package name) {
    git = 0; bubblewrap = 0; util-linux = 0; coreutils = 0; findutils = 0; e2fsprogs = 0;
  };
  config = lib.recursiveUpdate {
    services.hivekit = valuesOf evaluated.options.services.hivekit services own;
    boot.enableContainers = true;
    nix.package = package "nix";
    systemd.package = package "systemd";
  } host;
  evaluated = import ../../nix/module.nix { inherit lib pkgs config; };

  absent = { stubAbsent = true; };
  isAbsent = v: builtins.isAttrs v && v ? stubAbsent;
  resolve = v:
    if builtins.isAttrs v then
      if (v._type or null) == "if" then (if v.condition then resolve v.content else absent)
      else if (v._type or null) == "merge" then
        builtins.foldl' lib.recursiveUpdate { }
          (builtins.filter (x: !isAbsent x) (map resolve v.contents))
      else if builtins.elem (v._type or null) [ "override" "order" ] then resolve v.content
      else
        let parts = builtins.mapAttrs (_: resolve) v;
        in builtins.removeAttrs parts (builtins.filter (k: isAbsent parts.${k})
          (builtins.attrNames parts))
    else if builtins.isList v then builtins.filter (x: !isAbsent x) (map resolve v)
    else v;
  resolved = resolve evaluated.config;
  # The module's own definitions of its options, looked up one by one (resolving the whole
  # config needs the options' values: a cycle).
  top = let c = evaluated.config; in
    if (c._type or null) == "if" then (if c.condition then c.content else { }) else c;
  own = builtins.mapAttrs (_: resolve) (top.services.hivekit or { });

  # An option's value: what was set, else its default, else what the module itself defines (a
  # read-only option: configFile); a submodule's, option by option, freeform keys as set.
  valuesOf = options: given: own:
    builtins.mapAttrs (name: opt: valueOf opt (given ? ${name}) (given.${name} or null)
      (own.${name} or absent)) options
    // builtins.removeAttrs given (builtins.attrNames options);
  valueOf = opt: isGiven: given: own:
    if (opt._type or null) != "option" then valuesOf opt (if isGiven then given else { }) own
    else if (opt.type.stubKind or null) == "submodule" then
      valuesOf opt.type.stubOptions (if isGiven then given else opt.default or { }) { }
    else if isGiven then given
    else if opt ? default then opt.default
    else if !(isAbsent own) then own
    else throw "services.hivekit: an option without a default was not set";
in
{
  services = config.services.hivekit;
  config = resolved;
  assertions = map (a: a.message) (builtins.filter (a: !a.assertion) (resolved.assertions or [ ]));
  # What pkgs.formats.toml renders (with checkConfig = false, configFile is its output; with
  # true, a runCommand running `hivekit config check` on that output).
  configFile = resolved.services.hivekit.configFile;
  # The attrset handed to pkgs.formats.toml's generate (with checkConfig = false).
  settingsValue = own.configFile.value or null;
  # The check's script (with checkConfig = true).
  checkScript = own.configFile.script or null;
}
