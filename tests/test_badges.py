def badges(hive, name):
    """The agent's badge labels."""
    return [b["label"] for b in
            next(a["badges"] for a in hive.get("/api/state")["agents"] if a["name"] == name)]


def test_needs_login_until_the_agent_has_credentials(hive):
    hive.spawn("coder")
    assert "needs login" in badges(hive, "coder")
    creds = hive.state_dir / "agents" / "coder" / "creds"
    # What programs leave in HOME (the creds dir) is no login...
    (creds / ".claude").mkdir()
    (creds / ".claude.json").write_text("{}")
    (creds / ".claude" / "settings.json").write_text("{}")
    # ...a login's credentials file is, one level down as Claude Code writes it. Badges run
    # when a row is made, not per snapshot: the core watches the creds dirs (and their
    # subdirectories) and remakes the row of one that changed.
    (creds / ".claude" / ".credentials.json").write_text("{}")
    hive.wait_for(lambda: "needs login" not in badges(hive, "coder"),
                  what="the badge to go once the creds are there")
    assert "needs login" in badges(hive, "manager")
    (creds / ".claude" / ".credentials.json").unlink()
    hive.wait_for(lambda: "needs login" in badges(hive, "coder"),
                  what="the badge to come back once the creds are gone")


def test_what_counts_as_a_login_and_what_the_watcher_notices(tmp_path):
    from hivekit.badges import _creds_signature, needs_login
    from hivekit.records import AgentPaths, AgentSpec

    root = tmp_path / "agents" / "coder"
    agent = AgentSpec(name="coder", port=8100, is_manager=False, paths=AgentPaths(
        config=root / "config", state=root / "state", creds=root / "creds",
        applied=root / "applied", runtime=tmp_path / "run"))
    assert needs_login(agent) and _creds_signature(agent) is None  # no creds dir at all
    creds = agent.paths.creds
    (creds / ".claude").mkdir(parents=True)
    (creds / ".claude.json").write_text("{}")
    (creds / ".claude" / "settings.json").write_text("{}")
    (creds / "env").mkdir()
    (creds / "env" / ".ANTHROPIC_API_KEY.new").write_text("half-written")
    assert needs_login(agent)  # settings, caches and a half-written key are no login
    before = _creds_signature(agent)
    (creds / ".claude" / ".credentials.json").write_text("{}")
    assert not needs_login(agent) and _creds_signature(agent) != before
    (creds / ".claude" / ".credentials.json").unlink()
    before = _creds_signature(agent)
    (creds / "env" / "ANTHROPIC_API_KEY").write_text("k")
    assert not needs_login(agent) and _creds_signature(agent) != before


def test_the_watchers_listings_are_reused_only_while_a_settled_mtime_proves_them(tmp_path):
    """The creds watcher stats a dir instead of listing it again while its mtime has not moved,
    but only trusts a listing made when that mtime was already settled: a change within the
    same tick of the file clock (simulated: the mtime set back to what it was) is still seen
    the next time."""
    import os
    import time

    from hivekit.badges import SETTLED_NS, _creds_signature
    from hivekit.records import AgentPaths, AgentSpec

    root = tmp_path / "agents" / "coder"
    agent = AgentSpec(name="coder", port=8100, is_manager=False, paths=AgentPaths(
        config=root / "config", state=root / "state", creds=root / "creds",
        applied=root / "applied", runtime=tmp_path / "run"))
    claude = agent.paths.creds / ".claude"
    claude.mkdir(parents=True)
    cache: dict = {}
    recent = os.stat(claude).st_mtime_ns
    assert _creds_signature(agent, cache) == (".claude",)
    # Not settled when listed: a file added "in the same tick" is seen although mtime is back.
    (claude / ".credentials.json").write_text("{}")
    os.utime(claude, ns=(recent, recent))
    assert _creds_signature(agent, cache) == (".claude", ".claude/.credentials.json")
    # Settled (its mtime well in the past when listed): the next look is one stat and sees
    # the same; a change moves the mtime and is seen.
    old = time.time_ns() - 3 * SETTLED_NS
    os.utime(claude, ns=(old, old))
    assert _creds_signature(agent, cache) == (".claude", ".claude/.credentials.json")
    assert cache[str(claude)][2] is True
    assert _creds_signature(agent, cache) == (".claude", ".claude/.credentials.json")
    (claude / ".credentials.json").unlink()
    assert _creds_signature(agent, cache) == (".claude",)
    # Without a cache, the same answer.
    assert _creds_signature(agent) == _creds_signature(agent, cache)
