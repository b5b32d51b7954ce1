"""The declared plugin API: what ``from hivekit import ...`` offers, and that the bundled plugins
use nothing else (they are written as a third party's would be)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hivekit
from hivekit.hive import Hive

PLUGINS = Path(__file__).parent.parent / "plugins"
FILES = sorted(p for p in PLUGINS.rglob("*.py") if "__pycache__" not in p.parts)


def _own_package(path: Path) -> str:
    rel = path.relative_to(PLUGINS)
    return "hivekit_plugins" + (f".{rel.parts[0]}" if len(rel.parts) > 1 else "")


def _outside_api(path: Path) -> list[str]:
    """Every import in ``path`` that reaches into hivekit past its plugin API."""
    found = []
    own = _own_package(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module == "hivekit":
                found += [f"from hivekit import {a.name} (not in hivekit.__all__)"
                          for a in node.names if a.name not in hivekit.__all__]
            elif module.startswith("hivekit."):
                found.append(f"from {module} import ... (line {node.lineno})")
            elif module.startswith("hivekit_plugins") and not (
                    module == own or module.startswith(own + ".")):
                found.append(f"from {module} import ... (another plugin's insides)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hivekit.") or (
                        alias.name.startswith("hivekit_plugins.")
                        and not alias.name.startswith(own)):
                    found.append(f"import {alias.name} (line {node.lineno})")
    return found


def _hive_attributes(path: Path) -> list[str]:
    """Every ``hive.X`` / ``self.hive.X`` in ``path`` whose X is not in Hive.PLUGIN_API."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        is_hive = (isinstance(value, ast.Name) and value.id == "hive") or (
            isinstance(value, ast.Attribute) and value.attr == "hive"
            and isinstance(value.value, ast.Name) and value.value.id == "self")
        if is_hive and node.attr not in Hive.PLUGIN_API:
            found.append(f"hive.{node.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PLUGINS)) for p in FILES])
def test_bundled_plugins_import_only_the_plugin_api(path):
    assert _outside_api(path) == [], (
        f"{path.relative_to(PLUGINS)} uses hivekit's insides; add what it needs to the plugin "
        "API (hivekit/__init__.py) or do without")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PLUGINS)) for p in FILES])
def test_bundled_plugins_use_only_the_hives_plugin_api(path):
    assert _hive_attributes(path) == [], (
        f"{path.relative_to(PLUGINS)} uses Hive attributes outside Hive.PLUGIN_API")


def test_the_checks_catch_what_they_look_for(tmp_path):
    bad = PLUGINS / "port_check" / "_probe_for_the_test.py"
    try:
        bad.write_text("from hivekit.daemon import bind_unix\nfrom hivekit import nothing\n"
                       "import hivekit.store\nfrom hivekit_plugins.process import spec\n"
                       "def f(hive):\n    return hive.store\n")
        assert len(_outside_api(bad)) == 4
        assert _hive_attributes(bad) == ["hive.store (line 6)"]
    finally:
        bad.unlink()


@pytest.mark.parametrize("name", hivekit.__all__)
def test_every_name_of_the_plugin_api_is_there(name):
    assert getattr(hivekit, name) is not None
    assert name in dir(hivekit)


def test_hive_plugin_api_names_real_attributes(tmp_path):
    from hivekit.config import read
    from hivekit.plugins import load

    (tmp_path / "hivekit.toml").write_text('[hive]\nbackend = "fake"\nstate_dir = "s"\n')
    config = read(tmp_path / "hivekit.toml")
    hive = Hive(config, load(config))
    try:
        for name in Hive.PLUGIN_API:
            assert hasattr(hive, name), name
    finally:
        hive.store.close()


def test_importing_hivekit_stays_cheap():
    # Every CLI call imports it: the API's names are imported on first use only.
    code = ("import sys, hivekit; print(' '.join(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('hivekit', 'cattrs', 'attrs', 'litestar', 'httpx', 'click'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["hivekit"]
