def test_spawn_and_apply_roundtrip(hive):
    hive.spawn("coder")
    sha = hive.commit("coder", {"agent.conf": "x = 1\n"}, "tweak")
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    result = hive.post(f"/api/approvals/{approval['id']}/approve")
    assert result["status"] == "approved"
    assert result["tag"] == f"deployed/{approval['id']}"
