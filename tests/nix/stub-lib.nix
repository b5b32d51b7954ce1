# Just enough of nixpkgs' `lib` to evaluate nix/module.nix and nix/package.nix offline (no
# nixpkgs here: the tests have no network). Options are their declarations; `mkIf`, `mkMerge`,
# `mkDefault`... are kept as markers that eval-module.nix resolves the way the module system
# would for definitions made once each (the module defines none of its options twice).
let
  t = kind: { stubKind = kind; };
in
rec {
  inherit (builtins) attrNames elem filter foldl' hasAttr isAttrs isList mapAttrs;

  mkOption = attrs: attrs // { _type = "option"; };
  mkEnableOption = name: mkOption {
    type = types.bool;
    default = false;
    description = "Whether to enable ${name}.";
  };
  mkPackageOption = pkgs: name: extra: mkOption {
    type = types.package;
    default = pkgs.${name};
  };
  mkRenamedOptionModule = from: to: { stubRenamed = { inherit from to; }; };
  literalExpression = text: { _type = "literalExpression"; inherit text; };

  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  mkOrder = priority: content: { _type = "order"; inherit priority content; };
  mkBefore = mkOrder 500;
  mkAfter = mkOrder 1500;

  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  optionalAttrs = cond: attrs: if cond then attrs else { };
  optionalString = cond: s: if cond then s else "";
  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
  mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (attrNames attrs);
  concatStringsSep = builtins.concatStringsSep;
  makeBinPath = paths: concatStringsSep ":" (map (p: "${p.pname or p}/bin") paths);
  recursiveUpdate = a: b:
    a // mapAttrs (k: v: if isAttrs v && isAttrs (a.${k} or null) && !(v ? _type)
      then recursiveUpdate a.${k} v else v) b;
  cleanSourceWith = args: args.src;
  licenses.mit = "mit";
  platforms.linux = [ "x86_64-linux" "aarch64-linux" ];

  types = {
    str = t "str";
    bool = t "bool";
    port = t "port";
    path = t "path";
    package = t "package";
    anything = t "anything";
    int = t "int";
    listOf = _: t "listOf";
    attrsOf = _: t "attrsOf";
    nullOr = _: t "nullOr";
    strMatching = _: t "strMatching";
    nonEmptyListOf = _: t "nonEmptyListOf";
    numbers.positive = t "positiveNumber";
    enum = _: t "enum";
    submodule = m: {
      stubKind = "submodule";
      stubOptions = m.options or { };
    };
  };
}
