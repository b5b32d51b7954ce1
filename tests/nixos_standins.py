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
