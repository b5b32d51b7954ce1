"""The backend conformance suite: what every backend must do, checked against a real daemon.

A backend's own tests run it the way a third-party dialect runs SQLAlchemy's suite::

    # tests/test_contract.py
    from hivekit.testing.conformance import BackendContract

    class TestTmux(BackendContract):
        backend = "tmux"                      # the backend's entry-point name
        config = "[tmux]\\nshell = \\"bash\\"\\n"  # optional: extra TOML for the hive's config

pytest then runs every ``test_*`` check below against that backend on a real ``hivekit serve``
(one daemon per class, shared by its checks; each check works on agents of its own). A
failing check's name and message say which behaviour broke, in the operator's words
("after a daemon restart, an agent the operator stopped is running again"). Under
pytest-xdist, run with ``--dist loadgroup`` so that a class's checks share their daemon.

The suite watches the backend from inside the daemon through the ``conformance_probe`` plugin
(:mod:`hivekit.testing.probe`), which it enables, and from outside through the API. Where it
must reach the agent itself it asks methods a test class may override (as fsspec's abstract
tests take fixtures):

* :meth:`BackendContract.prepare` (write what the config needs before the daemon starts; the
  agents' names are :data:`AGENTS`);
* :meth:`BackendContract.kill` (make an agent die on its own) and
  :meth:`BackendContract.environ` (the environment the agent runs with): by default they look
  for the agent's processes on this host (by their identity variables), which is where a
  process-based backend runs them; the fake backend is handled by its control file;
* :meth:`BackendContract.broken_files` (a config the backend cannot build) and
  :meth:`BackendContract.slow_files` (one whose build takes long) and
  :meth:`BackendContract.crashing_files` (one that builds, but whose agent exits at once).

A backend that cannot do something the suite checks says so in ``unsupported`` (``{"check
name": "why"}``): those checks are skipped with that reason, never silently.

In ``config`` and ``env``, ``{root}`` stands for the daemon's directory (a short temp dir).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hivekit.testing import probe
from hivekit.testing.harness import HiveProcess

#: Every agent name the suite uses (a backend that must know them in advance, such as one
#: building from a fixed flake, can list them in :meth:`BackendContract.prepare`).
AGENTS = ("manager", "cspawn", "cmain", "cbroken", "cstart", "crestart", "cstop", "cdestroy",
          "cfailed", "cfailed2", "cthreads", "cdie", "ccrash", "cwant", "cstopped", "cenv", "clog",
          "clong", "cshut", "cunwell")
#: What the suite's daemons tell agents about the operator: not the default, so that a
#: backend that hard-codes the default is caught.
PRONOUNS = "xe/xem"
DASHBOARD_PORT = 7123
#: The broken config's error, for a backend (the fake) that fails on a FAIL file.
BROKEN = "conformance: this config is broken on purpose"


class BackendContract:
    """Subclass it, set ``backend``, and pytest checks the backend against the contract."""

    #: The backend's entry-point name (``[hive] backend``).
    backend: ClassVar[str] = ""
    #: Extra TOML for the hive's config (a ``[hive]`` table is merged; ``{root}`` is replaced).
    config: ClassVar[str] = ""
    #: Extra environment for the daemon (``{root}`` is replaced).
    env: ClassVar[dict[str, str]] = {}
    #: Checks this backend cannot pass, by test name, with the reason (reported as skips).
    unsupported: ClassVar[dict[str, str]] = {}
    #: Seconds any one thing may take (a spawn, a stop, an agent dying).
    timeout: ClassVar[float] = 90.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # One daemon per class: its checks stay together on one xdist worker (--dist loadgroup;
        # xdist registers the mark, so without it there is none to set).
        if importlib.util.find_spec("xdist") is not None:
            cls.pytestmark = [
                pytest.mark.xdist_group(f"contract:{cls.__module__}.{cls.__qualname__}")]

    # --- what a backend's test class may override ------------------------------------------

    def prepare(self, root: Path) -> None:
        """Called before the daemon starts, with its directory (``{root}``)."""

    def kill(self, hive: HiveProcess, name: str) -> None:
        """Make agent ``name`` die as if it crashed, behind the hive's back."""
        if self.backend == "fake":
            from hivekit.testing import fake

            fake.crash(hive, name)  # dies, and the fake's "supervisor" reports it
            return
        pids = _agent_pids(hive, name)
        assert pids, (f"found no process of agent {name!r} on this host to kill; a backend "
                      "whose agents are not host processes overrides BackendContract.kill")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def environ(self, hive: HiveProcess, name: str) -> dict[str, str] | None:
        """The environment agent ``name`` runs with, or None if it cannot be found."""
        if self.backend == "fake":
            from hivekit.testing import fake

            return fake.environ(hive.state_dir, name)
        for pid in _agent_pids(hive, name):
            env = _environ(pid)
            if env is not None:
                return env
        return None

    def broken_files(self, hive: HiveProcess, name: str) -> dict[str, str]:
        """A commit the backend cannot build: by default every file the backend seeded the
        agent's repo with, overwritten with text no config language accepts, and a ``FAIL``
        file (which fails the fake's build)."""
        files = {rel: "{{ this is not a valid config: [ ( <\n"
                 for rel in _tracked(hive.state_dir / "agents" / name / "config")}
        return {**files, "FAIL": BROKEN + "\n"}

    def slow_files(self, hive: HiveProcess, name: str) -> dict[str, str] | None:
        """A commit whose build takes minutes (None: the backend cannot be told so; the fake
        is told through its control file)."""
        return None

    def crashing_files(self, hive: HiveProcess, name: str) -> dict[str, str] | None:
        """A commit that builds, but whose agent exits at once whenever it starts (None: the
        backend cannot be told so; the fake is told through its control file)."""
        return None

    # --- the daemon ---------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def contract(cls, request: pytest.FixtureRequest) -> Iterator[HiveProcess]:
        if not cls.backend:
            pytest.fail(f"{cls.__name__} must set backend = \"<entry-point name>\"")
        failed = cls.__dict__.get("_contract_failed")
        if failed:  # pytest would start the daemon again for every check
            pytest.fail(f"the hive did not start (see the class's first check):\n{failed}",
                        pytrace=False)
        root = Path(tempfile.mkdtemp(prefix="hkc", dir="/tmp"))
        instance = cls()
        instance.prepare(root)
        hive = HiveProcess(root / "h", _config(cls, root),
                           env={k: v.replace("{root}", str(root)) for k, v in cls.env.items()})
        try:
            try:
                hive.start(timeout=cls.timeout)
                _wait(hive, lambda: _running(hive, "manager"), cls.timeout,
                      "the manager came up when the hive started (spawned at its first start)")
            except BaseException as exc:
                cls._contract_failed = str(exc)[:3000]
                raise
            yield hive
        finally:
            try:
                hive.stop()
            except Exception:
                if hive.proc is not None and hive.proc.poll() is None:
                    hive.kill()
            for pid in _hive_processes(hive):  # whatever outlived it (its check says so)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(root, ignore_errors=True)

    @pytest.fixture(autouse=True)
    def _declared(self, request: pytest.FixtureRequest) -> None:
        reason = type(self).unsupported.get(request.node.originalname)
        if reason:
            pytest.skip(f"{self.backend} does not support this: {reason}")

    # --- the checks ---------------------------------------------------------------------------

    def test_a_spawn_builds_what_the_applied_repos_main_holds(self, contract):
        """An approved spawn builds the agent from its applied repo's main and leaves it
        running."""
        approval = _spawn(contract, "cspawn", self.timeout)
        spawn = _last(contract, "cspawn", "spawn")
        _expect(spawn and spawn["ok"], "a spawn ran the backend and succeeded",
                f"the probe saw {spawn}")
        _expect(spawn["main"] == approval["sha"], "the spawn built the applied repo's main",
                f"main was {spawn['main']} when the backend was called; the spawn deployed "
                f"{approval['sha']}")
        said = _says(contract, "cspawn")
        _expect(said == "True", "a spawned agent is running (is_running says so)",
                f"is_running: {said}")
        _expect(_state_status(contract, "cspawn") == "running",
                "the dashboard shows a spawned agent as running", "it does not")

    def test_a_rebuild_builds_the_applied_main_not_the_proposed_repo(self, contract):
        """A rebuild builds what was approved (the applied repo's main), never what the manager
        merely committed to its proposed repo."""
        _spawn(contract, "cmain", self.timeout)
        # A broken commit in the proposed repo that nobody approved: a rebuild must not see it.
        contract.commit("cmain", self.broken_files(contract, "cmain"), "broken, not applied")
        result = _post(contract, "/api/agents/cmain/rebuild")
        _expect(result.get("status") == "running",
                "a rebuild builds the applied main, not the proposed repo",
                f"with a broken, unapproved commit in the proposed repo the rebuild failed: "
                f"{result.get('error')}")
        good = _good(contract, "cmain")
        contract.commit("cmain", self.broken_files(contract, "cmain"), "broken again")
        approval = _apply(contract, "cmain", good)
        _expect(approval["status"] == "approved",
                "an apply builds the commit approved, not the proposed repo's tip",
                f"deploying a good commit failed while a broken one sat on top of it: "
                f"{approval['note']}")
        rebuild = _last(contract, "cmain", "rebuild")
        _expect(rebuild["main"] == good, "the apply's build saw the approved commit as main",
                f"main was {rebuild['main']}, the approved commit {good}")

    def test_a_broken_config_fails_the_build_and_the_previous_version_keeps_running(
            self, contract):
        """A config that does not build fails its approval with the backend's error as the
        failed/<id> tag's body, and the agent keeps running the previous version."""
        first = _spawn(contract, "cbroken", self.timeout)
        bad = contract.commit("cbroken", self.broken_files(contract, "cbroken"), "broken")
        approval = _apply(contract, "cbroken", bad)
        _expect(approval["status"] == "failed", "a config that cannot be built fails its deploy",
                f"the broken commit was {approval['status']}")
        rebuild = _last(contract, "cbroken", "rebuild")
        _expect(not rebuild["ok"] and rebuild["hive_error"],
                "a failed build raises a HiveError whose message the operator reads",
                f"the backend raised {rebuild.get('type')}: {rebuild.get('error')}")
        note = approval["note"] or ""
        _expect(note.strip() and "Traceback" not in note,
                "the failed approval says why, in the backend's words", f"its note: {note!r}")
        from hivekit.git import Repo

        body = Repo(contract.state_dir / "applied" / "cbroken").tag_message(
            f"failed/{approval['id']}")
        _expect(body.strip() == note.strip(), "the failed/<id> tag's body is the build error",
                f"tag body {body!r}, approval note {note!r}")
        said = _says(contract, "cbroken")
        _expect(said == "True", "after a failed build, the previous version keeps running",
                f"is_running: {said}")
        _expect(_state(contract, "cbroken")["deployed_sha"] == first["sha"],
                "after a failed build, the deployed version is the previous one", "it moved")

    def test_an_agent_that_exits_on_its_new_config_is_rolled_back(self, contract):
        """A config whose agent does not stay up fails its deploy, and the agent runs its
        previous config again: refused by the build itself (a start that waits for the agent),
        or else by the ``verify`` step (a ``health_check``, or the backend's status reports),
        after which ``main`` goes back, the agent is rebuilt from the previous config, and the
        failed/<id> note says that it was deployed, then rolled back, and why."""
        first = _spawn(contract, "cunwell", self.timeout)
        files = self.crashing_files(contract, "cunwell")
        if files is None and self.backend != "fake":
            pytest.fail("no way to make an agent exit at once: override "
                        "BackendContract.crashing_files (or declare the check in unsupported, "
                        "with the reason)")
        fake = None
        if files is None:
            from hivekit.testing import fake

            fake.control(contract.state_dir, unhealthy={"cunwell": "conformance: it exits"})
            files = {"conformance.txt": "exits at once\n"}
        try:
            sha = contract.commit("cunwell", files, "exits at once")
            approval = _apply(contract, "cunwell", sha)
        finally:
            if fake is not None:
                fake.control(contract.state_dir)
        note = approval["note"] or ""
        _expect(approval["status"] == "failed",
                "an agent that does not stay up on its new config fails the deploy",
                f"the deploy was {approval['status']}: nothing noticed that the agent exits "
                "(a health_check, or hive.report_status when it dies, would)")
        _expect(note.strip() and "Traceback" not in note,
                "the failed deploy says why, in the backend's words", f"its note: {note!r}")
        built = [c for c in _calls(contract, "cunwell") if c["hook"] == "rebuild"]
        if any(c["ok"] and c["main"] == sha for c in built):  # it built: verify refused it
            _expect(note.startswith("deployed, then rolled back: "),
                    "a deploy refused after its build says it was rolled back",
                    f"its note: {note!r}")
            _expect(built[-1]["ok"] and built[-1]["main"] == first["sha"],
                    "the rollback rebuilt the agent from the previous config",
                    f"the last rebuild: {built[-1]}")
        from hivekit.git import Repo

        main = Repo(contract.state_dir / "applied" / "cunwell").rev("refs/heads/main")
        _expect(main == first["sha"], "after the failed deploy, main is the previous deploy",
                f"main is {main}, the previous deploy {first['sha']}")
        said = _wait_value(lambda: _says(contract, "cunwell") == "True", self.timeout)
        _expect(said, "after the failed deploy, the agent runs its previous config",
                f"is_running: {_says(contract, 'cunwell')}")

    def test_start_is_idempotent_and_runs_what_was_last_built(self, contract):
        """Starting a running agent changes nothing; a stopped one starts what was last built,
        without building anything."""
        _spawn(contract, "cstart", self.timeout)
        before = len(_calls(contract, "cstart"))
        for _ in range(2):
            result = _post(contract, "/api/agents/cstart/start")
            _expect(result.get("status") == "running", "starting a running agent is fine",
                    f"it answered {result}")
        _post(contract, "/api/agents/cstart/stop")
        result = _post(contract, "/api/agents/cstart/start")
        _expect(result.get("status") == "running", "a stopped agent starts again",
                f"it answered {result}")
        built = [c["hook"] for c in _calls(contract, "cstart")[before:]
                 if c["hook"] in ("spawn", "rebuild")]
        _expect(not built, "a start runs what was built, and builds nothing",
                f"the start called {built}")
        said = _says(contract, "cstart")
        _expect(said == "True", "a started agent runs", f"is_running: {said}")

    def test_a_restart_runs_what_was_last_built(self, contract):
        """A restart (the backend's own, or stop then start) leaves the agent running what
        was last built, without building anything."""
        _spawn(contract, "crestart", self.timeout)
        before = len(_calls(contract, "crestart"))
        result = _post(contract, "/api/agents/crestart/restart")
        _expect(result.get("status") == "running", "a restarted agent runs",
                f"it answered {result}")
        hooks = [c["hook"] for c in _calls(contract, "crestart")[before:]]
        _expect(hooks in (["restart"], ["restart", "stop", "start"]),
                "a restart is the backend's restart, or a stop then a start",
                f"the backend was called for {hooks}")
        said = _says(contract, "crestart")
        _expect(said == "True", "a restarted agent runs", f"is_running: {said}")

    def test_stopping_a_stopped_agent_is_fine(self, contract):
        """Stop is idempotent: stopping an agent that is already stopped succeeds."""
        _spawn(contract, "cstop", self.timeout)
        for attempt in ("a running", "a stopped"):
            result = _post(contract, "/api/agents/cstop/stop")
            _expect(result.get("status") == "stopped", f"stopping {attempt} agent is fine",
                    f"it answered {result}")
        said = _says(contract, "cstop")
        _expect(said == "False", "a stopped agent does not run", f"is_running: {said}")

    def test_destroy_stops_and_removes_and_tolerates_a_missing_container_and_a_purge(
            self, contract):
        """Destroy needs no stop first, removes the container (the name can be spawned
        again), and a later purge (its container already gone) is fine."""
        _spawn(contract, "cdestroy", self.timeout)
        before = len(_calls(contract, "cdestroy"))
        result = _post(contract, "/api/agents/cdestroy/destroy", {"purge": False})
        _expect("error" not in result, "destroying a running agent works without a stop",
                f"it answered {result}")
        hooks = [c["hook"] for c in _calls(contract, "cdestroy")[before:]]
        _expect(hooks == ["destroy"], "the core destroys without stopping first",
                f"the backend was called for {hooks}")
        said = _says(contract, "cdestroy")
        _expect(said == "False", "a destroyed agent does not run", f"is_running: {said}")
        _spawn(contract, "cdestroy", self.timeout, what="a destroyed agent spawned again")
        _post(contract, "/api/agents/cdestroy/destroy", {"purge": False})
        result = _post(contract, "/api/agents/cdestroy/destroy", {"purge": True})
        _expect("error" not in result, "purging a tombstone (its container gone) is fine",
                f"it answered {result}")
        last = _last(contract, "cdestroy", "destroy")
        _expect(last["ok"], "destroying a missing container is not an error",
                f"the backend raised {last.get('error')}")

    @pytest.mark.parametrize("when", ["after", "before"])
    def test_a_failed_spawn_cleans_up(self, contract, when):
        """When a spawn fails (here: another plugin refuses it after, or before, the backend
        made the container), the backend's destroy removes what was made: nothing runs, and
        the name can be spawned again."""
        name = "cfailed" if when == "after" else "cfailed2"
        probe.control(contract.state_dir, refuse_spawn={name: when})
        try:
            approval = contract.post("/api/requests/spawn", {"name": name})
            contract.post(f"/api/approvals/{approval['id']}/approve")
            failed = contract.wait_resolved(approval["id"], self.timeout)
        finally:
            probe.control(contract.state_dir)
        _expect(failed["status"] == "failed", "a refused spawn fails", f"it was {failed}")
        destroy = _last(contract, name, "destroy")
        _expect(destroy is not None, "a failed spawn gets a destroy",
                "the backend was never told to clean up")
        _expect(destroy["ok"], "the destroy after a failed spawn succeeds "
                               + ("(its container is half-made)" if when == "after" else
                                  "(there is no container at all)"),
                f"it raised {destroy.get('type')}: {destroy.get('error')}")
        said = _says(contract, name)
        _expect(said == "False", "nothing of a failed spawn runs", f"is_running: {said}")
        _spawn(contract, name, self.timeout, what="the name of a failed spawn spawned again")

    def test_is_running_answers_from_many_threads_and_is_false_for_unknown_agents(
            self, contract):
        """is_running is thread-safe: many threads asking at once all get the truth, and it
        is False for an agent the backend never heard of."""
        _spawn(contract, "cthreads", self.timeout)
        for name, expected, what in (("cthreads", True, "a running agent"),
                                     ("cnever", False, "an agent that never existed")):
            answer = _ask(contract, name, threads=8, calls=5)
            _expect(not answer["errors"], f"is_running answers for {what}",
                    f"it raised: {answer['errors']}")
            _expect(answer["answers"] == [repr(expected)],
                    f"is_running says {expected} for {what}, from 8 threads at once",
                    f"it answered {answer['answers']}")
        _post(contract, "/api/agents/cthreads/stop")
        answer = _ask(contract, "cthreads", threads=8, calls=5)
        _expect(answer["answers"] == ["False"] and not answer["errors"],
                "is_running says False for a stopped agent, from 8 threads at once",
                f"it answered {answer}")

    def test_is_running_turns_false_when_the_agent_dies_on_its_own(self, contract):
        """An agent that dies behind the hive's back is soon no longer reported running."""
        _spawn(contract, "cdie", self.timeout)
        self.kill(contract, "cdie")
        died = _wait_value(lambda: _says(contract, "cdie") == "False", self.timeout)
        _expect(died, "is_running turns False when the agent dies on its own",
                f"{self.timeout:g}s after the agent was killed, is_running: "
                f"{_says(contract, 'cdie')}")

    def test_the_dashboard_hears_when_an_agent_dies_on_its_own(self, contract):
        """An agent that dies behind the hive's back is shown as not running without anyone
        asking (the backend reports it: hive.report_status), and the hive's observers hear of
        the crash once (agent_crashed)."""
        _spawn(contract, "ccrash", self.timeout)
        seen = len(probe.statuses(contract.state_dir, "ccrash"))
        self.kill(contract, "ccrash")
        shown = _wait_value(lambda: {"failing", "stopped"} & set(
            probe.statuses(contract.state_dir, "ccrash")[seen:]), self.timeout)
        _expect(shown, "the dashboard shows an agent that died on its own as not running "
                       "(the backend reports it through hive.report_status)",
                f"{self.timeout:g}s after the agent was killed, its row went through "
                f"{probe.statuses(contract.state_dir, 'ccrash')[seen:] or 'no change'}")
        crashes = _wait_value(lambda: probe.crashes(contract.state_dir, "ccrash"), 10)
        _expect(len(crashes) == 1, "the hive's observers hear of the crash once (agent_crashed)",
                f"they heard {crashes}")

    def test_after_a_daemon_restart_wanted_agents_run_and_stopped_ones_do_not(self, contract):
        """A daemon restart brings back every agent the operator wants running, leaves the
        ones the operator stopped stopped, and builds nothing."""
        _spawn(contract, "cwant", self.timeout)
        _spawn(contract, "cstopped", self.timeout)
        _post(contract, "/api/agents/cstopped/stop")
        before = len(_calls(contract))
        contract.restart()
        came_back = _wait_value(lambda: _says(contract, "cwant") == "True", self.timeout)
        _expect(came_back, "after a daemon restart, an agent the operator wants running runs",
                f"{self.timeout:g}s after the restart, is_running: {_says(contract, 'cwant')}")
        _wait(contract, lambda: _running(contract, "manager"), self.timeout,
              "the manager runs after a daemon restart")
        said = _says(contract, "cstopped")
        _expect(said == "False",
                "after a daemon restart, an agent the operator stopped stays stopped",
                f"is_running: {said}")
        built = [(c["hook"], c["agent"]) for c in _calls(contract)[before:]
                 if c["hook"] in ("spawn", "rebuild")]
        _expect(not built, "a daemon restart builds nothing", f"it called {built}")
        started = [c["agent"] for c in _calls(contract)[before:] if c["hook"] == "start"]
        _expect("cstopped" not in started, "a daemon restart does not start a stopped agent",
                f"it started {started}")

    def test_shutdown_leaves_no_stray_process(self, contract):
        """When the daemon stops, nothing it started keeps running except agents the next
        daemon recognises as running."""
        _spawn(contract, "cshut", self.timeout)
        contract.stop(timeout=self.timeout)
        left = _hive_processes(contract)
        before = len(_calls(contract))
        contract.start(timeout=self.timeout)
        _wait(contract, lambda: _running(contract, "manager"), self.timeout,
              "the manager runs after a daemon restart")
        _wait(contract, lambda: _says(contract, "cshut") == "True", self.timeout,
              "cshut runs after a daemon restart")
        # A process that outlived the daemon is an agent kept running only if the new daemon
        # found it running: had it started the agent again, the old process is a stray.
        restarted = {c["agent"] for c in _calls(contract)[before:]
                     if c["hook"] in ("start", "spawn", "rebuild")}
        strays = []
        for pid, env in left.items():
            label = env.get("HIVE_LABEL")
            if not Path(f"/proc/{pid}").exists():
                continue
            if label is None or label in restarted or _says(contract, label) != "True":
                strays.append(f"pid {pid} ({_cmdline(pid)}, agent {label or 'none'})")
        _expect(not strays, "a stopped daemon leaves no stray process behind",
                f"still running after the daemon stopped: {strays}")

    def test_the_identity_variables_are_set(self, contract):
        """Every agent runs with its identity (HIVE_LABEL, HIVE_PORT, HIVE_SOCKET...) as the
        hive defines it (hive.agent_env), with the hive's own values."""
        _spawn(contract, "cenv", self.timeout)
        env = _wait_value(lambda: self.environ(contract, "cenv"), self.timeout)
        _expect(env, "the agent's environment can be read",
                "no process of the agent was found; a backend whose agents are not host "
                "processes overrides BackendContract.environ")
        port = _state(contract, "cenv")["port"]
        for key, value in (("HIVE_LABEL", "cenv"), ("HIVE_PORT", str(port)),
                           ("HIVE_DASHBOARD_PORT", str(DASHBOARD_PORT)),
                           ("HIVE_OPERATOR_PRONOUNS", PRONOUNS)):
            _expect(env.get(key) == value, f"the agent's {key} is {value!r}",
                    f"it is {env.get(key)!r}")
        for key in ("HIVE_SOCKET", "HIVE_NOTES", "HIVE_SHARED"):
            _expect(env.get(key), f"the agent's {key} is set", f"its environment: {env}")

    def test_output_reaches_the_live_log(self, contract):
        """What the backend and the agent say while it spawns reaches the dashboard's live log
        (hive.log)."""
        _spawn(contract, "clog", self.timeout)
        lines = _wait_value(lambda: probe.log_lines(contract.state_dir, "clog"), self.timeout)
        _expect(lines, "a spawn's output reaches the live log",
                "nothing was logged for the agent (hive.log was never called for it)")

    def test_long_work_stops_when_the_hive_is_stopping(self, contract):
        """A build that takes long gives up when the daemon is asked to stop, so that the
        daemon stops promptly (and the deploy is failed as interrupted at the next start)."""
        _spawn(contract, "clong", self.timeout)
        files = self.slow_files(contract, "clong")
        if files is None and self.backend != "fake":
            pytest.fail("no way to make a build take long: override BackendContract.slow_files"
                        " (or declare the check in unsupported, with the reason)")
        if files is None:
            from hivekit.testing import fake

            fake.control(contract.state_dir, hang=["clong"])
            files = {"conformance.txt": "slow\n"}
        sha = contract.commit("clong", files, "slow")
        approval = contract.post("/api/requests/apply", {"agent": "clong", "commit": sha})
        threading.Thread(target=lambda: _post(contract, f"/api/approvals/{approval['id']}"
                                                        "/approve"), daemon=True).start()
        _wait(contract, lambda: any(c["hook"] == "rebuild" for c in
                                    probe.begun(contract.state_dir, "clong")),
              self.timeout, "the slow build began")
        began = time.monotonic()
        try:
            contract.stop(timeout=30)
            stopped = True
        except Exception:
            stopped = False
        finally:
            if self.backend == "fake":
                from hivekit.testing import fake

                fake.control(contract.state_dir)
        took = time.monotonic() - began
        try:  # the next daemon's recovery of the deploy may rebuild: a deaf build hangs it too
            contract.start(timeout=self.timeout)
            again = None
        except Exception as exc:
            again = str(exc)[-1500:]
        _expect(stopped, "a long build gives up when the hive is stopping",
                f"the daemon had not stopped {took:.0f}s after SIGTERM while the build ran "
                "(check hive.stopping in long work)")
        _expect(again is None, "the hive starts again after a stop that interrupted a build",
                f"it did not: {again}")
        resolved = contract.wait_resolved(approval["id"], self.timeout)
        _expect(resolved["status"] == "failed", "an interrupted deploy is failed",
                f"it is {resolved['status']}")


# --- helpers -------------------------------------------------------------------------------------


def _expect(condition: Any, behaviour: str, detail: str) -> None:
    """Fail with the behaviour that broke, then what was seen."""
    if not condition:
        pytest.fail(f"expected: {behaviour}\n     but: {detail}", pytrace=False)


def _ports() -> tuple[int, int, int]:
    """A manager port, a port base and a range under which every agent of :data:`AGENTS` gets
    a port of its own, all free now: a contract daemon's agents never collide with each other
    (the port check would refuse them) nor, likely, with other hives running meanwhile."""
    import random
    import socket

    from hivekit.names import agent_port

    names = [n for n in AGENTS if n != "manager"]
    span = next(s for s in range(1000, 5000)
                if len({agent_port(n, manager="manager", manager_port=1, base=0, span=s)
                        for n in names}) == len(names))
    for _ in range(50):
        base = random.randrange(20000, 60000 - span)
        wanted = [base - 1] + [base + agent_port(n, manager="manager", manager_port=1, base=0,
                                                 span=span) for n in names]
        free = True
        for port in wanted:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base - 1, base, span
    raise RuntimeError("found no free range of ports for the contract's agents")


def _config(cls: type[BackendContract], root: Path) -> str:
    extra = cls.config.replace("{root}", str(root))
    manager_port, base, span = _ports()
    ours = (f'backend = "{cls.backend}"\nenable = ["conformance_probe"]\n'
            f'operator_pronouns = "{PRONOUNS}"\ndashboard_port = {DASHBOARD_PORT}\n'
            f"manager_port = {manager_port}\nport_base = {base}\nport_range = {span}\n")
    if "[dashboard]" not in extra:  # any free port: several contract daemons run at once
        extra += "\n[dashboard]\nport = 0\n"
    if "[hive]\n" in extra:
        if "\nenable" in extra.split("[hive]\n", 1)[1].split("\n[", 1)[0]:
            raise ValueError("BackendContract.config: set further plugins with an enable list "
                             "outside [hive]: the suite sets [hive] enable itself")
        return extra.replace("[hive]\n", "[hive]\n" + ours, 1)
    return "[hive]\n" + ours + extra


def _wait_value(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def _wait(hive: HiveProcess, predicate: Callable[[], Any], timeout: float, what: str) -> None:
    if not _wait_value(predicate, timeout):
        pytest.fail(f"expected: {what}\n     but: not within {timeout:g}s\n"
                    f"{hive.log()[-3000:]}", pytrace=False)


def _post(hive: HiveProcess, path: str, body: Any = None) -> dict[str, Any]:
    """POST, with an error answered as ``{"error": message}`` instead of raised."""
    from hivekit.client import ApiError

    try:
        return hive.post(path, body) or {}
    except ApiError as exc:
        return {"error": str(exc)}


def _spawn(hive: HiveProcess, name: str, timeout: float,
           what: str = "an approved spawn succeeds") -> dict[str, Any]:
    approval = hive.post("/api/requests/spawn", {"name": name})
    hive.post(f"/api/approvals/{approval['id']}/approve")
    result = hive.wait_resolved(approval["id"], timeout)
    _expect(result["status"] == "approved", what,
            f"the spawn of {name} {result['status']}: {result['note']}")
    return result


def _apply(hive: HiveProcess, name: str, sha: str) -> dict[str, Any]:
    approval = hive.post("/api/requests/apply", {"agent": name, "commit": sha})
    hive.post(f"/api/approvals/{approval['id']}/approve")
    return hive.approval(approval["id"])


def _calls(hive: HiveProcess, name: str | None = None) -> list[dict[str, Any]]:
    return probe.calls(hive.state_dir, name)


def _last(hive: HiveProcess, name: str, hook: str) -> dict[str, Any] | None:
    found = [c for c in _calls(hive, name) if c["hook"] == hook]
    return found[-1] if found else None


def _ask(hive: HiveProcess, name: str, threads: int = 1, calls: int = 1) -> dict[str, Any]:
    return hive.get("/api/conformance/is_running", name=name, threads=threads, calls=calls)


def _says(hive: HiveProcess, name: str) -> str:
    """What is_running says for ``name`` (one call): ``True``, ``False``, or what it raised."""
    answer = _ask(hive, name)
    if answer["errors"]:
        return "raised " + answer["errors"][0]
    return answer["answers"][0]


def _state(hive: HiveProcess, name: str) -> dict[str, Any]:
    return next(a for a in hive.get("/api/state")["agents"] if a["name"] == name)


def _state_status(hive: HiveProcess, name: str) -> str | None:
    found = [a for a in hive.get("/api/state")["agents"] if a["name"] == name]
    return found[0]["status"] if found else None


def _running(hive: HiveProcess, name: str) -> bool:
    return _state_status(hive, name) == "running"


def _good(hive: HiveProcess, name: str) -> str:
    """Commit, in the agent's proposed repo, its first config (what the backend seeded) plus a
    harmless file of the suite's: a commit that builds, whatever came before."""
    from hivekit.git import Repo

    repo = Repo(hive.state_dir / "agents" / name / "config")
    first = repo("rev-list", "--max-parents=0", "HEAD").split()[0]
    repo("read-tree", "--reset", "-u", first)
    (repo.path / "conformance.txt").write_text(f"good {time.time()}\n")
    return repo.commit_all("conformance: the seeded config again")


def _tracked(repo: Path) -> list[str]:
    from hivekit.git import Repo

    return [p for p in Repo(repo)("ls-files").splitlines() if p]


def _environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            yield int(entry)


def _agent_pids(hive: HiveProcess, name: str) -> list[int]:
    """Processes on this host that carry agent ``name``'s identity in this hive (its notes,
    creds or socket path, as the host names them)."""
    agent = hive.state_dir / "agents" / name
    ours = {str(agent / "state"), str(agent / "creds"),
            str(hive.runtime_dir / "agents" / name / "hive.sock")}
    found = []
    for pid in _pids():
        env = _environ(pid)
        if env and env.get("HIVE_LABEL") == name and ours & {
                env.get("HIVE_NOTES"), env.get("HIVE_CREDS"), env.get("HIVE_SOCKET")}:
            found.append(pid)
    return found


def _hive_processes(hive: HiveProcess) -> dict[int, dict[str, str]]:
    """Every process that came from this hive: started with its config, or carrying the
    identity of one of its agents."""
    config = str(hive.config_path)
    roots = (str(hive.state_dir), str(hive.runtime_dir))
    found = {}
    for pid in _pids():
        env = _environ(pid)
        if not env:
            continue
        if env.get("HIVEKIT_CONFIG") == config or any(
                (env.get(k) or "").startswith(roots)
                for k in ("HIVE_NOTES", "HIVE_CREDS", "HIVE_SOCKET")):
            found[pid] = env
    return found


__all__ = ["AGENTS", "BROKEN", "DASHBOARD_PORT", "PRONOUNS", "BackendContract"]
