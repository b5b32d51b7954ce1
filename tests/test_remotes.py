"""The ``applied`` remote of the proposed repos (hivekit.remotes) on a backend without a mount
table (the fake: agents see the host, as the process backend's sandbox shows the applied repos
at their host paths), and a proposed repo that tries to make hivekit write elsewhere."""

from __future__ import annotations

import os

from hivekit.git import Repo


def remote_of(hive, agent: str) -> str:
    return Repo(hive.state_dir / "agents" / agent / "config")(
        "config", "--get", "remote.applied.url").strip()


def test_without_a_mount_table_the_remote_is_the_host_path_and_fetches(hive):
    hive.spawn("coder")
    applied = hive.state_dir / "applied" / "coder"
    assert remote_of(hive, "coder") == str(applied / ".git")
    proposed = Repo(hive.state_dir / "agents" / "coder" / "config")
    proposed("fetch", "applied")
    assert proposed.rev("refs/remotes/applied/main") == \
        Repo(applied).rev("refs/heads/main")


def test_a_drifted_remote_is_repointed_at_startup_and_a_linked_config_is_never_written(
        hive, short_tmp):
    hive.spawn("coder")
    hive.spawn("tester")
    drifted = Repo(hive.state_dir / "agents" / "coder" / "config")
    drifted("remote", "set-url", "applied", "/elsewhere")
    drifted("config", "remote.applied.fetch", "+refs/heads/*:refs/remotes/applied/*")
    # The manager replaces tester's config with a link to a file of the host's.
    outside = short_tmp / "outside"
    outside.write_text("[core]\n\tnot = yours\n")
    config = hive.state_dir / "agents" / "tester" / "config" / ".git" / "config"
    config.unlink()
    config.symlink_to(outside)
    hive.restart()
    hive.wait_for(lambda: remote_of(hive, "coder") == str(
        hive.state_dir / "applied" / "coder" / ".git"), what="coder's remote re-pointed")
    hive.wait_for(lambda: "not pointing tester's applied remote" in hive.log(),
                  what="tester's repo refused")
    assert outside.read_text() == "[core]\n\tnot = yours\n"
    assert os.path.islink(config)


def test_a_remote_drifted_while_running_is_repointed_when_its_agent_comes_up(hive):
    hive.spawn("coder")
    right = str(hive.state_dir / "applied" / "coder" / ".git")
    Repo(hive.state_dir / "agents" / "coder" / "config")(
        "remote", "set-url", "applied", "/elsewhere")
    hive.post("/api/agents/coder/restart")
    hive.wait_for(lambda: remote_of(hive, "coder") == right, what="coder's remote re-pointed")
