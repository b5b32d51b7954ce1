"""The wake-up (hivekit.wake): one template, filled in with the agent's notes path as the agent
sees it (its backend's mount table), checked when the config is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivekit import Mount, config, hookimpl, plugins, wake
from hivekit.hive import Hive

#: hive-c0re's wake-up for a sub-agent (coordinator.rs kick_agent), word for word.
REFERENCE = ("config update applied\n\nYou were just (re)started by the operator. If you were "
             "mid-task, check `/agents/coder/state/` for your notes and pick up where you left "
             "off. claude's `--continue` session is intact, so prior context is still in your "
             "window.")


class Container:
    """Shows the agent's notes where the nixos_container backend binds them."""

    __name__ = "container-mounts"

    @hookimpl
    def agent_mounts(self, hive, agent):
        notes = "/state" if agent.is_manager else f"/agents/{agent.name}/state"
        return [Mount(agent.paths.state, notes), Mount(agent.paths.runtime, "/run/hive")]


def make(short_tmp: Path, extra: str = "", mounts: bool = True) -> Hive:
    path = short_tmp / "hivekit.toml"
    path.write_text('[hive]\nbackend = "fake"\nstate_dir = "state"\n' + extra)
    cfg = config.read(path)
    return Hive(cfg, plugins.load(cfg, extra={"container-mounts": Container()} if mounts
                                  else None))


def test_the_default_is_the_references_text_with_the_inside_notes_path(short_tmp):
    hive = make(short_tmp)
    assert wake.message(hive, hive.agent("coder"), "config update applied") == REFERENCE
    assert "check `/state/` for your notes" in wake.message(hive, hive.agent("manager"), "x")


def test_without_a_mount_table_the_notes_are_the_host_path(short_tmp):
    hive = make(short_tmp, mounts=False)
    coder = hive.agent("coder")
    assert f"check `{coder.paths.state}/` for" in wake.message(hive, coder, "started")


def test_a_configured_template(short_tmp):
    hive = make(short_tmp, 'wake_template = "{name}: {reason} (notes in {notes}) {{ok}}"\n')
    assert wake.message(hive, hive.agent("coder"), "rebuilt by the operator") == \
        "coder: rebuilt by the operator (notes in /agents/coder/state) {ok}"


@pytest.mark.parametrize(("template", "says"), [
    ("{reason} {session}", "names {session}, which hivekit does not fill in"),
    ("{reason:>10}", "takes plain placeholders only"),
    ("{reason", "is not a template"),
])
def test_a_template_hivekit_cannot_fill_in_is_a_config_error(short_tmp, template, says):
    path = short_tmp / "hivekit.toml"
    path.write_text(f'[hive]\nbackend = "fake"\nwake_template = "{template}"\n')
    with pytest.raises(Exception) as err:
        cfg = config.read(path)
        plugins.load(cfg)
    assert "wake_template" in str(err.value) and says in str(err.value)
