"""A backend that breaks the contract on purpose (plugin ``broken``): the conformance suite must
fail on it, naming each behaviour it breaks (tests/test_contract_broken.py).

What it gets wrong, each the way a first attempt at a backend might:

* it builds from the *proposed* repo (what the manager committed), not the applied ``main``;
* a build it cannot do raises a plain ``RuntimeError``, after stopping what ran;
* ``start`` of a running agent and ``stop`` of a stopped one raise; ``destroy`` of an agent it
  has no process for raises;
* ``is_running`` raises ``KeyError`` for an agent it never heard of, and keeps saying True for
  one whose process died: it answers from its own bookkeeping, which forgets nothing and
  remembers nothing across a daemon restart;
* it never reports a status (``hive.report_status``): the hive learns of a death from no one;
* its agents get only ``HIVE_LABEL`` and ``HIVE_NOTES``, nothing reaches ``hive.log``;
* a commit with a file ``SLOW`` takes ten minutes to build, deaf to ``hive.stopping``;
* with a file ``EXIT`` its agent exits at once, and nothing notices (no ``health_check``, no
  status report): the deploy counts as a success;
* its processes outlive the daemon (no ``shutdown``).
"""

from __future__ import annotations

import subprocess
import time

from hivekit import hookimpl

_running: dict[str, subprocess.Popen] = {}


def _build(agent):
    tree = agent.paths.config  # wrong: the proposed repo, not agent.paths.applied
    if (tree / "SLOW").exists():
        time.sleep(600)
    if (tree / "FAIL").exists():
        raise RuntimeError("the build failed")


def _run(agent):
    env = {"PATH": "/usr/bin:/bin", "HIVE_LABEL": agent.name, "HIVE_NOTES": str(agent.paths.state)}
    argv = ["sh", "-c", "exit 3"] if (agent.paths.config / "EXIT").exists() else ["sleep", "3600"]
    _running[agent.name] = subprocess.Popen(argv, env=env, start_new_session=True)


def _kill(agent):
    _running.pop(agent.name).kill()  # KeyError when it has no process


@hookimpl
def spawn(hive, agent):
    _build(agent)
    _run(agent)


@hookimpl
def rebuild(hive, agent, deploy):
    if agent.name in _running:
        _kill(agent)  # wrong: the old version stops before the new one is known to build
    _build(agent)
    _run(agent)


@hookimpl
def start(hive, agent):
    if agent.name in _running:
        raise RuntimeError(f"{agent.name} is already running")
    _run(agent)


@hookimpl
def stop(hive, agent):
    _kill(agent)


@hookimpl
def destroy(hive, agent, purge):
    _kill(agent)


@hookimpl
def is_running(hive, agent):
    if not hive.has_agent(agent.name) and agent.name not in _running:
        raise KeyError(agent.name)  # wrong: an agent it never heard of is simply not running
    return agent.name in _running  # wrong: never asks whether the process still lives
