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
    assert "needs login" in badges(hive, "coder")
    # ...a login's credentials file is.
    (creds / ".claude" / ".credentials.json").write_text("{}")
    assert "needs login" not in badges(hive, "coder")
    assert "needs login" in badges(hive, "manager")
