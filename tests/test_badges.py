def badges(hive, name):
    """The agent's badge labels."""
    return [b["label"] for b in
            next(a["badges"] for a in hive.get("/api/state")["agents"] if a["name"] == name)]


def test_needs_login_until_the_agent_has_credentials(hive):
    hive.spawn("coder")
    assert "needs login" in badges(hive, "coder")
    creds = hive.state_dir / "agents" / "coder" / "creds"
    # Badges run when a row is made, not per snapshot: the core watches the creds dirs and
    # remakes the row of one that changed.
    (creds / ".credentials.json").write_text("{}")
    hive.wait_for(lambda: "needs login" not in badges(hive, "coder"),
                  what="the badge to go once the creds are there")
    assert "needs login" in badges(hive, "manager")
    (creds / ".credentials.json").unlink()
    hive.wait_for(lambda: "needs login" in badges(hive, "coder"),
                  what="the badge to come back once the creds are gone")
