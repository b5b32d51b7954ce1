# hivekit itself, built from this repository with nixpkgs' Python packages.
#   pkgs.python3Packages.callPackage ./package.nix { }
{
  lib,
  buildPythonApplication,
  setuptools,
  pluggy,
  attrs,
  cattrs,
  litestar,
  uvicorn,
  sh,
  apsw,
  click,
  httpx,
  git,
  src ? ../.,
}:

let
  pyproject = builtins.fromTOML (builtins.readFile (src + "/pyproject.toml"));
  # What a working copy holds besides the sources (a flake's source is already clean).
  junk = [ ".git" ".venv" ".hivekit" "result" "__pycache__" ".pytest_cache" ".ruff_cache" ];
in
buildPythonApplication {
  pname = "hivekit";
  inherit (pyproject.project) version;
  pyproject = true;

  src = lib.cleanSourceWith {
    inherit src;
    filter = path: _type: !(builtins.elem (baseNameOf path) junk);
  };

  build-system = [ setuptools ];
  dependencies = [ pluggy attrs cattrs litestar uvicorn sh apsw click httpx ];
  # pyproject's lower bounds are what it was developed against; nixpkgs' versions are fine.
  pythonRelaxDeps = true;

  # Every deploy is git-audited: the daemon needs git whatever PATH it is started with.
  makeWrapperArgs = [ "--prefix" "PATH" ":" (lib.makeBinPath [ git ]) ];

  # The suite runs real daemons, git and bubblewrap (scripts/test); here, check it imports.
  doCheck = false;
  pythonImportsCheck = [ "hivekit" "hivekit.daemon" "hivekit_plugins.process.backend" ];

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "hivekit";
    platforms = lib.platforms.linux;
  };
}
