# The hivekit.toml that services.hivekit writes, in plain Nix: no nixpkgs, so the test suite
# evaluates this very file (nix-instantiate --eval) and runs `hivekit config check` on what it
# renders for the module's defaults. module.nix takes its option defaults from `defaults` here.
#
#   (import ./settings.nix).render { stateDir, runtimeDir, backend, dashboardPort, enable,
#                                    disable, settings }  ->  the TOML text
let
  inherit (builtins)
    attrNames concatStringsSep filter isAttrs isBool isFloat isInt isList isPath isString
    match toJSON typeOf;

  mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (attrNames attrs);
  withoutNulls = attrs: builtins.removeAttrs attrs (filter (k: attrs.${k} == null) (attrNames attrs));
  recursiveUpdate = a: b:
    a // builtins.mapAttrs
      (k: v: if isAttrs v && isAttrs (a.${k} or null) then recursiveUpdate a.${k} v else v) b;

  # TOML: JSON's string escapes are all valid in TOML basic strings, so toJSON quotes.
  key = k: if match "[A-Za-z0-9_-]+" k != null then k else toJSON k;
  float = x: let s = toJSON x; in if match ".*[.eE].*" s != null then s else "${s}.0";
  value = v:
    if isAttrs v then
      "{ " + concatStringsSep ", " (mapAttrsToList (k: x: "${key k} = ${value x}") (withoutNulls v)) + " }"
    else if isList v then "[" + concatStringsSep ", " (map value v) + "]"
    else if isBool v then (if v then "true" else "false")
    else if isInt v then toString v
    else if isFloat v then float v
    else if isString v then toJSON v
    else if isPath v then toJSON (toString v)
    else throw "services.hivekit.settings: a ${typeOf v} cannot be written to TOML";
  # hivekit's config is tables only: [hive] and one table per plugin; sub-tables go inline.
  table = name: attrs:
    if !isAttrs attrs then
      throw "services.hivekit.settings.${name} must be a table (an attribute set), not a ${typeOf attrs}"
    else
      "[${key name}]\n"
      + concatStringsSep "" (mapAttrsToList (k: v: "${key k} = ${value v}\n") (withoutNulls attrs));
in
rec {
  # The module's option defaults (services.hivekit.<name>).
  defaults = {
    stateDir = "/var/lib/hivekit";
    runtimeDir = "/run/hivekit";
    backend = "process";
    dashboardPort = 7000;
    enable = [ ];
    disable = [ ];
    settings = { };
  };

  # The config as an attribute set: the module's own options make [hive], and
  # services.hivekit.settings is merged over it (so settings.hive.manager = "boss" works).
  settingsFor = cfg:
    recursiveUpdate
      {
        hive = {
          state_dir = cfg.stateDir;
          runtime_dir = cfg.runtimeDir;
          backend = cfg.backend;
          enable = cfg.enable;
          disable = cfg.disable;
          dashboard_port = cfg.dashboardPort;
        };
      }
      cfg.settings;

  toTOML = settings: concatStringsSep "\n" (mapAttrsToList table settings);

  render = cfg: toTOML (settingsFor cfg);
}
