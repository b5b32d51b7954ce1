"""Following an operation: `hivekit wait`, and Ctrl-C during `approve`, `rebuild` and `start`
(the operation goes on; the CLI says how to follow it and exits 130), through the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Any

from hivekit.git import Repo
from hivekit.testing import HiveProcess, control


class Cli:
    """A `hivekit` CLI process whose stderr is read as it comes."""

    def __init__(self, hive: HiveProcess, *args: str) -> None:
        self.hive = hive
        self.proc = subprocess.Popen([sys.executable, "-m", "hivekit", *args], cwd=hive.root,
                                     env=hive.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr),
                                       daemon=True)
        self.reader.start()

    def wait_for_line(self, text: str) -> None:
        self.hive.wait_for(lambda: any(text in line for line in self.err),
                           what=f"the CLI to print {text!r}")

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def finish(self) -> tuple[int, str]:
        self.proc.wait(60)
        out = self.proc.stdout.read()  # stderr is the reader's alone
        self.reader.join(10)
        return self.proc.returncode, out + "".join(self.err)


def deployed(hive: HiveProcess, name: str) -> Any:
    agents = json.loads(hive.cli("agents", "--json").stdout)
    return next(a["deployed_sha"] for a in agents if a["name"] == name)


def test_ctrl_c_during_approve_and_wait(hive: HiveProcess) -> None:
    hive.spawn("coder")
    before = Repo(hive.state_dir / "applied" / "coder").rev("main")
    sha = hive.commit("coder", {"agent.conf": "v = 2\n"}, "v2")
    approval_id = str(hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})["id"])
    control(hive.state_dir, hang=["coder"])
    approving = Cli(hive, "approve", approval_id)
    approving.wait_for_line("fake: rebuild hangs")
    # Mid-deploy, main is the proposal already, but the agent still runs the old config.
    assert deployed(hive, "coder") == before
    code, output = approving.interrupt()
    assert code == 130, output
    assert f"approval #{approval_id} goes on" in output
    assert f"hivekit wait {approval_id}" in output
    assert "Aborted" not in output and "Traceback" not in output
    assert hive.approval(int(approval_id))["status"] == "running"

    waiting = Cli(hive, "wait", approval_id)
    waiting.wait_for_line(f"following approval #{approval_id}")
    control(hive.state_dir)  # the build finishes
    code, output = waiting.finish()
    assert code == 0, output
    assert "-- deployed" in output and f"approved (deployed/{approval_id})" in output
    assert deployed(hive, "coder") == sha
    # Waiting for an approval that ended says how it ended at once.
    again = hive.cli("wait", approval_id, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "approved"
    denied = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})["id"]
    hive.post(f"/api/approvals/{denied}/deny", {"note": "no"})
    result = hive.cli("wait", str(denied))
    assert result.returncode == 1 and "denied" in result.stdout and "no" in result.stderr
    # Bad targets are refused with the reason.
    for target, why in (("999", "no approval #999"), ("ghost", "no agent named 'ghost'")):
        result = hive.cli("wait", target)
        assert result.returncode == 1 and why in result.stderr, result


def test_ctrl_c_during_rebuild_and_start(hive: HiveProcess) -> None:
    hive.spawn("coder")
    for verb in ("rebuild", "start"):
        if verb == "start":
            assert hive.cli("stop", "coder").returncode == 0
        control(hive.state_dir, hang=["coder"])
        running = Cli(hive, verb, "coder")
        running.wait_for_line(f"fake: {verb} hangs")
        code, output = running.interrupt()
        assert code == 130, output
        assert f"the {verb} of coder goes on" in output and "hivekit wait coder" in output
        waiting = Cli(hive, "wait", "coder")
        waiting.wait_for_line("following coder")
        control(hive.state_dir)
        code, output = waiting.finish()
        assert (code, output.strip().splitlines()[0]) == (0, "coder: running"), output
        assert hive.get("/api/state")["transients"] == {}


def test_the_wait_routes_refuse_bad_input(hive: HiveProcess) -> None:
    from hivekit.client import ApiError

    for path, timeout, why in (
            ("/api/approvals/x/wait", None, "approval_id: expected an id"),
            ("/api/approvals/1/wait", "soon", "timeout"),
            ("/api/approvals/1/wait", "-1", "between 0 and"),
            ("/api/approvals/1/wait", "nan", "timeout"),
            ("/api/agents/manager/wait", "4000", "between 0 and"),
            ("/api/agents/Bad!/wait", None, "")):
        try:
            hive.client().request("GET", path, timeout=timeout)
        except ApiError as exc:
            assert exc.status in (400, 404) and why in exc.message, (path, exc.message)
        else:
            raise AssertionError(f"{path} was accepted")
    # A timeout returns the approval as it is.
    spawn = hive.post("/api/requests/spawn", {"name": "later"})
    got = hive.client().request("GET", f"/api/approvals/{spawn['id']}/wait", timeout="0.2")
    assert got["status"] == "pending"
