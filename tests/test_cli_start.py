"""A CLI that starts fast (hivekit.clicache, hivekit.client): what ``hivekit --help`` and
``hivekit agents`` import once a run has recorded the plugins' commands and the config, and that
the record follows the installed distributions, the plugins' sources and the config file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: What a plain command must not import (each alone costs more than the command's work).
HEAVY = ("httpx", "cattrs", "attr", "importlib.metadata", "litestar", "rich", "pygments",
         "hivekit.convert", "hivekit.config", "hivekit.plugins")


#: Runs the CLI as ``hivekit`` does, and writes every module it imported to $MODULES at exit.
#: (Not ``-X importtime``: it does not see modules imported with importlib, as plugins are.)
RUN = ("import atexit, os, sys\n"
       "atexit.register(lambda: open(os.environ['MODULES'], 'w').write('\\n'.join(sys.modules)))\n"
       "from hivekit.cli import main\n"
       "main()\n")


class Ran(subprocess.CompletedProcess):
    modules: set[str]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> Ran:
    out = Path(env["HIVEKIT_CACHE_DIR"]).with_name("modules.txt")
    proc = subprocess.run([sys.executable, "-c", RUN, *args], cwd=cwd,
                          env={**env, "MODULES": str(out)}, capture_output=True, text=True,
                          timeout=120)
    proc.modules = set(out.read_text().split("\n"))  # type: ignore[attr-defined]
    return proc  # type: ignore[return-value]


def imported(proc: Ran) -> set[str]:
    """The modules a run imported."""
    return proc.modules


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


def plugin_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith("hivekit_plugins")}


@pytest.fixture
def env(short_tmp: Path) -> dict[str, str]:
    return {**os.environ, "HIVEKIT_CACHE_DIR": str(short_tmp / "cache")}


def test_help_imports_no_plugin_once_recorded(short_tmp, env):
    (short_tmp / "hivekit.toml").write_text('[hive]\nbackend = "fake"\n')
    first = run(["--help"], short_tmp, env)
    assert heavy(imported(first))  # no record yet: the full work (this test can fail)
    assert first.returncode == 0, first.stderr[-2000:]
    assert plugin_modules(imported(first))  # no record yet: every enabled plugin is imported
    second = run(["--help"], short_tmp, env)
    assert second.returncode == 0
    assert second.stdout == first.stdout  # the same help, every plugin command listed
    assert "agents " in second.stdout and "dashboard " in second.stdout
    assert plugin_modules(imported(second)) == set()
    assert heavy(imported(second)) == set()
    assert "pluggy" not in imported(second)


def test_agents_imports_only_its_plugin(hive, env):
    first = run(["agents"], hive.root, {**env, **hive.env, "HIVEKIT_CACHE_DIR":
                                        env["HIVEKIT_CACHE_DIR"]})
    assert first.returncode == 0, first.stderr[-2000:]
    second = run(["agents"], hive.root, {**env, **hive.env, "HIVEKIT_CACHE_DIR":
                                         env["HIVEKIT_CACHE_DIR"]})
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout == first.stdout and "manager" in second.stdout
    modules = imported(second)
    assert plugin_modules(modules) == {"hivekit_plugins", "hivekit_plugins.cli"}
    assert heavy(modules) == set()


GREETER = '''\
import click
from hivekit import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command()
    def greet():
        """Say hello (from a freshly installed plugin)."""
        click.echo("hello")
'''


def install(site: Path) -> Path:
    """Install a distribution the way pip lays one out: its module and its .dist-info."""
    (site / "greeter_plugin.py").write_text(GREETER)
    info = site / "greeter_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hivekit]\ngreeter = greeter_plugin\n")
    return info


def test_a_plugin_installed_or_removed_shows_up_or_goes(short_tmp, env):
    import shutil

    site = short_tmp / "site"
    site.mkdir()
    env = {**env, "PYTHONPATH": str(site)}
    (short_tmp / "hivekit.toml").write_text('[hive]\nbackend = "fake"\nenable = ["greeter"]\n')

    def commands() -> str:
        proc = run(["--help"], short_tmp, env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    assert "greet" not in commands()
    assert "greet" not in commands()  # from the record
    info = install(site)
    assert "greet  " in commands()
    hit = run(["greet"], short_tmp, env)
    assert (hit.returncode, hit.stdout) == (0, "hello\n")
    assert "greeter_plugin" in imported(hit)
    # Editing the plugin's source changes its commands: the record goes stale with it.
    (site / "greeter_plugin.py").write_text(GREETER + textwrap.dedent('''
        @hookimpl
        def register_commands(cli):
            @cli.command()
            def wave():
                """Wave."""
        '''))
    assert "wave" in commands()
    shutil.rmtree(info)
    assert "greet" not in commands() and "wave" not in commands()


def test_a_config_edited_after_the_record_is_read_again(hive, env):
    env = {**hive.env, "HIVEKIT_CACHE_DIR": env["HIVEKIT_CACHE_DIR"]}
    assert run(["agents"], hive.root, env).returncode == 0
    assert run(["agents"], hive.root, env).returncode == 0
    text = hive.config_path.read_text()
    hive.config_path.write_text(text.replace("[hive]\n", "[hive]\nport_range = \"many\"\n", 1))
    bad = run(["agents"], hive.root, env)
    assert bad.returncode == 1
    assert "port_range" in bad.stderr and "Traceback" not in bad.stderr
    hive.config_path.write_text(text)
    assert run(["agents"], hive.root, env).returncode == 0


def test_no_daemon_is_said_plainly(short_tmp, env):
    (short_tmp / "hivekit.toml").write_text('[hive]\nbackend = "fake"\n')
    for _ in range(2):  # without and with a record
        proc = run(["agents"], short_tmp, env)
        assert proc.returncode == 1
        assert "no hive running at" in proc.stderr and "hivekit serve" in proc.stderr
        assert "Traceback" not in proc.stderr
