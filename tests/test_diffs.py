"""Bounded diffs: a proposal adding a 20 MiB file gives an approval answer under the cap plus a
few KiB on every surface (admin API, agent socket, CLI), ending with the truncation marker."""

from __future__ import annotations

import json

from rawhttp import call

from hivekit.testing import HiveProcess

CAP = 1024 * 1024
SLACK = 4 * 1024


def test_a_20_mib_proposal_is_capped_on_every_surface(hive: HiveProcess) -> None:
    hive.spawn("coder")
    line = "0123456789abcdef" * 6 + "\n"  # 97 bytes
    big = line * (20 * 1024 * 1024 // len(line) + 1)
    sha = hive.commit("coder", {"big.txt": big, "small.txt": "small\n"}, "a big file")
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    marker = (f"diff truncated: {{}} of {{}} bytes shown; `git diff main..proposal/"
              f"{approval['id']}` in the applied repo shows it all")
    status, admin = call(hive.socket, "GET", f"/api/approvals/{approval['id']}")
    status2, agent = call(hive.runtime_dir / "agents" / "manager" / "hive.sock", "GET",
                          f"/approvals/{approval['id']}")
    cli = hive.cli("show", str(approval["id"]))
    assert (status, status2, cli.returncode) == (200, 200, 0), cli.stderr
    for text in (admin, agent, cli.stdout):
        assert len(text.encode()) < CAP + SLACK, len(text)
    detail = json.loads(admin)
    assert detail["diff_truncated"] is True and detail["diff_bytes"] > 20 * 1024 * 1024
    shown = len(detail["diff"].rpartition("\n\n")[0].encode()) + 1  # the diff shown, its "\n"
    assert 0 < shown <= CAP
    last = detail["diff"].rstrip("\n").rsplit("\n", 1)[1]
    assert last == "… " + marker.format(shown, detail["diff_bytes"]), last
    assert detail["diff"].rpartition("\n\n")[0].endswith(line.rstrip("\n"))  # cut at a line
    assert json.loads(agent)["diff"] == detail["diff"]
    assert marker.format(shown, detail["diff_bytes"]) in cli.stdout
    # Decided on the capped diff, the deploy still carries the whole file.
    hive.post(f"/api/approvals/{approval['id']}/approve")
    assert (hive.state_dir / "applied" / "coder" / "big.txt").stat().st_size == len(big)
    after = hive.get(f"/api/approvals/{approval['id']}")
    assert after["diff_truncated"] and "git diff " in after["diff"].rsplit("\n", 2)[-2]


def test_a_diff_under_the_cap_is_whole(make_hive) -> None:
    hive = make_hive('[hive]\nbackend = "fake"\nmax_diff_bytes = 2048\n')
    hive.wait_for(lambda: hive.get("/api/agents"), what="the manager")
    hive.spawn("coder")
    sha = hive.commit("coder", {"a.txt": "a\n" * 100})
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    detail = hive.get(f"/api/approvals/{approval['id']}")
    assert not detail["diff_truncated"] and "truncated" not in detail["diff"]
    assert detail["diff_bytes"] == len(detail["diff"].encode())
    sha = hive.commit("coder", {"a.txt": "b\n" * 2000})
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    detail = hive.get(f"/api/approvals/{approval['id']}")
    assert detail["diff_truncated"] and len(detail["diff"].encode()) < 2048 + 300
