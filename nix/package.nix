# hivekit itself, built from this repository with nixpkgs' Python packages.
#   pkgs.python3Packages.callPackage ./package.nix { }
# The dependencies are pyproject.toml's [project] dependencies, one nixpkgs package each (a test,
# tests/test_nix.py, and the flake's `package-dependencies` check compare the two lists).
{
  lib,
  buildPythonApplication,
  setuptools,
  pluggy,
  attrs,
  cattrs,
  litestar,
  uvicorn,
  apsw,
  click,
  httpx,
  mcp,
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
  dependencies = [ pluggy attrs cattrs litestar uvicorn apsw click httpx mcp ];
  # pyproject's lower bounds are what it was developed against; nixpkgs' versions are fine.
  pythonRelaxDeps = true;

  # Every deploy is git-audited: the daemon needs git whatever PATH it is started with.
  makeWrapperArgs = [ "--prefix" "PATH" ":" (lib.makeBinPath [ git ]) ];

  # The suite runs real daemons, git and bubblewrap (scripts/test); here, check it imports.
  doCheck = false;
  pythonImportsCheck = [
    "hivekit" "hivekit.daemon" "hivekit_plugins.process.backend"
    # `hivekit mcp` (the agents' MCP bridge) imports the mcp SDK only when it runs.
    "hivekit_plugins.agent_api.bridge" "mcp"
  ];

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "hivekit";
    platforms = lib.platforms.linux;
  };
}
