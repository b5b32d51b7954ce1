"""Helpers for tests that run the nixos_container backend against the stand-ins in standins/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

STANDINS = Path(__file__).parent / "standins"
NIXOS_CONTAINER = STANDINS / "nixos-container"
SYSTEMCTL = STANDINS / "systemctl"
JOURNALCTL = STANDINS / "journalctl"
NIX_ENV = STANDINS / "nix-env"
#: The base-system programs of a stand-in container (runuser, env, systemctl show).
IN_CONTAINER = STANDINS / "incontainer"
ENV = "NIXOS_STANDIN_ROOT"


class Host:
    """The stand-ins' view of one fake host (everything under ``root``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.conf_dir = self.root / "etc" / "nixos-containers"
        self.run_dir = self.root / "run" / "systemd" / "system"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, ENV: str(self.root)}

    def run(self, program: Path, *args: str, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(program), *args], env=self.env, cwd=cwd,
                              capture_output=True, text=True, timeout=60)

    def nixos_container(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return self.run(NIXOS_CONTAINER, *args, cwd=cwd)

    def systemctl(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(SYSTEMCTL, *args)

    @property
    def profiles_dir(self) -> Path:
        return self.root / "nix" / "var" / "nix" / "profiles" / "per-container"

    def backend_table(self, flake: Path | str | None = None) -> str:
        """The ``[nixos_container]`` keys that point the backend at these stand-ins."""
        lines = [f'nixos_container = "{NIXOS_CONTAINER}"', f'systemctl = "{SYSTEMCTL}"',
                 f'nix_env = "{NIX_ENV}"', f'journalctl = "{JOURNALCTL}"',
                 f'containers_conf_dir = "{self.conf_dir}"',
                 f'systemd_run_dir = "{self.run_dir}"', f'profiles_dir = "{self.profiles_dir}"']
        if flake is not None:
            lines.append(f'flake = "{flake}"')
        return "\n".join(lines) + "\n"

    def nix_conf(self, text: str) -> None:
        """Write the host's nix.conf (e.g. ``experimental-features = nix-command flakes``)."""
        path = self.root / "etc" / "nix" / "nix.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def profile(self, container: str) -> Path:
        """The store path the container's system profile points at now."""
        return (self.profiles_dir / container / "system").resolve()

    def container_root(self, container: str) -> Path:
        return self.root / "var" / "lib" / "nixos-containers" / container

    def declare_container(self, container: str, *, users: dict[str, str] | None = None,
                          files: dict[str, str] | None = None,
                          links: dict[str, Path] | None = None, running: bool = True) -> Path:
        """A container the host's configuration declares (as a forge's is): its conf, a root
        with the base system's programs at /run/current-system/sw/bin, /etc/passwd for
        ``users`` (name -> home), ``files`` (path inside -> content) and ``links`` (path
        inside -> a stand-in program); its unit active unless ``running`` is False."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / f"{container}.conf").write_text("PRIVATE_NETWORK=1\n")
        croot = self.container_root(container)
        sw = croot / "run" / "current-system" / "sw" / "bin"
        sw.mkdir(parents=True, exist_ok=True)
        for program in ("runuser", "env", "systemctl"):
            (sw / program).unlink(missing_ok=True)
            (sw / program).symlink_to(IN_CONTAINER)
        passwd = ["root:x:0:0:System administrator:/root:/run/current-system/sw/bin/bash"]
        passwd += [f"{name}:x:{990 + i}:{990 + i}::{home}:/run/current-system/sw/bin/bash"
                   for i, (name, home) in enumerate(sorted((users or {}).items()))]
        (croot / "etc").mkdir(parents=True, exist_ok=True)
        (croot / "etc" / "passwd").write_text("\n".join(passwd) + "\n")
        for inside, content in (files or {}).items():
            target = croot / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        for inside, program in (links or {}).items():
            target = croot / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            target.symlink_to(program)
        path = self.root / "systemd.json"
        data = json.loads(path.read_text()) if path.exists() else {"units": {},
                                                                    "loaded_dropins": {}}
        data["units"][f"container@{container}.service"] = {
            "state": "active" if running else "inactive"}
        path.write_text(json.dumps(data))
        return croot

    def conf(self, container: str) -> str:
        return (self.conf_dir / f"{container}.conf").read_text()

    def unit(self, container: str) -> dict[str, Any]:
        path = self.root / "systemd.json"
        data = json.loads(path.read_text()) if path.exists() else {"units": {}}
        return data["units"].get(f"container@{container}.service", {"state": "inactive"})

    def calls(self, prog: str | None = None) -> list[dict[str, Any]]:
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [r for r in rows if prog is None or r["prog"] == prog]

    def containers(self) -> list[str]:
        return sorted(p.stem for p in self.conf_dir.glob("*.conf"))


def write_flake(path: Path, applied_root: Path, names: list[str]) -> Path:
    """A host flake building each agent from its applied repo, as an operator would write one."""
    path.mkdir(parents=True, exist_ok=True)
    inputs = "".join(f'  inputs.agent-{n}.url = "path:{applied_root / n}";\n' for n in names)
    systems = "".join(
        f"      nixosConfigurations.{n} = nixpkgs.lib.nixosSystem {{\n"
        f'        system = "x86_64-linux";\n'
        f"        modules = [ inputs.agent-{n}.nixosModules.default "
        f"{{ boot.isContainer = true; }} ];\n"
        f"      }};\n" for n in names)
    (path / "flake.nix").write_text(
        "{\n"
        '  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";\n'
        f"{inputs}"
        "  outputs = { nixpkgs, ... }@inputs:\n"
        "    {\n"
        f"{systems}"
        "    };\n"
        "}\n")
    return path
