"""Config validation is complete: a wrong type in any key of ``[hive]`` or of any installed
plugin's table is refused, every problem at once, one line each naming file, table and key.

Generated from the config classes themselves (``HiveConfig`` and every installed plugin's
``config_schema``, nested tables included): a new key is covered without editing this file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
from type_rules import I64, fields, fits, is_optional

from hivekit import config as cfg
from hivekit import plugins
from hivekit.errors import ConfigError, PluginError

#: TOML values of every kind; each key gets those its type does not fit.
WRONG = ["false", "8100", "", True, False, 0, 5, 1.9, 0.5, math.nan, math.inf, [], ["x"], [1],
         {}, {"a": 1}, I64, -I64 - 1]
BACKENDS = ("fake", "process", "nixos_container")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else repr(value))
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def schemas() -> dict[str, type]:
    """Every table's config class: ``hive`` and each installed plugin's."""
    found: dict[str, type] = {"hive": cfg.HiveConfig}
    for name, plugin in sorted(plugins.installed().items()):
        pm = plugins.make_manager()
        try:
            plugins.register(pm, name, plugins.import_plugin(plugin))
        except PluginError:  # the test suite's deliberately broken plugin
            continue
        schema = pm.hook.config_schema()
        if schema is not None:
            found[name] = schema
    return found


def keys(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, type)`` of every setting, nested records under a sample agent ``coder``."""
    out = []
    for att in fields(cls):
        t = typing.get_args(att.type)[0] if is_optional(att.type) else att.type
        out.append((prefix + att.name, att.type))
        args = typing.get_args(t)
        if typing.get_origin(t) is dict and attrs.has(args[1]):
            out += keys(args[1], f"{prefix}{att.name}.coder.")
        elif attrs.has(t):
            out += keys(t, f"{prefix}{att.name}.")
    return out


def config_text(table: str, settings: dict[str, Any]) -> str:
    hive: dict[str, Any] = {"backend": table if table in BACKENDS else "fake"}
    if table not in BACKENDS and table != "hive":
        hive["enable"] = [table]
    lines = ["[hive]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in hive.items()
              if table != "hive" or k not in settings]
    if table == "hive":
        lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
        return "\n".join(lines) + "\n"
    lines.append(f"[{table}]")
    nested: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        head, _, rest = key.rpartition(".")
        if head:
            nested.setdefault(head, {})[rest] = value
        else:
            lines.append(f"{key} = {toml_value(value)}")
    for head, values in nested.items():
        lines.append(f"[{table}.{head}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        plugins.load(cfg.read(path, keep_going=True))
    return info.value.problems


TABLES = schemas()


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_key_of_every_table_refuses_every_wrong_type(tmp_path: Path, table: str) -> None:
    settings = keys(TABLES[table])
    types = dict(settings)
    # A key holding a nested table is set through its own keys.
    leaves = [k for k, _t in settings if not any(o.startswith(k + ".") for o, _ in settings)]
    wrong = {key: [v for v in WRONG if not fits(v, types[key])] for key in leaves}
    rounds = max(len(v) for v in wrong.values())
    assert leaves and rounds > 3
    for n in range(rounds):
        chosen = {k: wrong[k][n % len(wrong[k])] for k in leaves}
        path = tmp_path / f"{n}.toml"
        path.write_text(config_text(table, chosen))
        lines = problems_of(path)
        for key, value in chosen.items():
            mine = [line for line in lines if any(f"[{table}] {key}{end}" in line
                                                  for end in (":", "[", "."))]
            assert mine, (table, key, value, lines)
            assert all(line.startswith(f"{path}: ") for line in mine), mine


def test_several_bad_tables_are_all_reported_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "hivekit.toml"
    path.write_text('[hive]\nbackend = "fake"\nport_base = "8100"\nmanager = "../../x"\n'
                    "[dashboard]\nallow_remote = \"no\"\nport = 1.9\n"
                    "[agent_api]\nmax_request_bytes = true\n"
                    "[fake]\nhang = \"coder\"\n[nosuch]\nx = 1\n")
    result = subprocess.run([sys.executable, "-m", "hivekit", "config", "check", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for says in ('[hive] port_base: expected an integer, got the string "8100"',
                 "[hive] manager: '../../x' is not an agent name",
                 '[dashboard] allow_remote: expected a boolean, got the string "no"',
                 "[dashboard] port: expected an integer, got the number 1.9",
                 "[agent_api] max_request_bytes: expected an integer, got the boolean true",
                 '[fake] hang: expected a list of strings, got the string "coder"',
                 "[nosuch]: no plugin named 'nosuch'"):
        assert sum(says in line for line in lines) == 1, (says, lines)
    assert all(line.startswith(f"error: {path}: ") for line in lines), lines
    assert len(lines) == 7, lines


@pytest.mark.parametrize("manager", ["../../x", "Boss", "operator", "system", "a" * 10, ""])
def test_a_bad_manager_name_is_refused_before_anything_is_created(tmp_path: Path,
                                                                  manager: str) -> None:
    home = tmp_path / "a" / "b"
    home.mkdir(parents=True)
    config = home / "hivekit.toml"
    config.write_text(f'[hive]\nbackend = "fake"\nstate_dir = "s"\nmanager = "{manager}"\n')
    check = subprocess.run([sys.executable, "-m", "hivekit", "config", "check", str(config)],
                           capture_output=True, text=True)
    assert check.returncode == 1 and "[hive] manager:" in check.stderr, check.stderr
    serve = subprocess.run([sys.executable, "-m", "hivekit", "--config", str(config), "serve"],
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode == 1 and "[hive] manager:" in serve.stderr, serve.stderr
    assert "Traceback" not in serve.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "hivekit.toml"]


def test_the_generated_keys_reach_nested_tables() -> None:
    # What the generated test relies on: nested records' keys are walked too.
    process = dict(keys(TABLES["process"]))
    assert "agents.coder.memory" in process and "sandbox" in process
    assert "manager" in dict(keys(TABLES["hive"]))
    assert {"hive", "dashboard", "agent_api", "fake", "process", "nixos_container"} <= set(TABLES)
