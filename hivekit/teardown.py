"""Destroying and purging an agent so that a crash anywhere leaves the agent, its whole
tombstone, or nothing.

A destroy first records its intent in the store (the agent's row says ``destroying`` or
``purging``: from then on it is not one of the hive's agents), then has the plugins destroy the
container, then — for a purge — moves the agent's folders into ``<state_dir>/trash/<name>`` with
one rename each, then unregisters the agent and fails its pending approvals in one transaction
with the messages that owes (:mod:`hivekit.outbox`), and only then deletes the trash. Startup
finishes every destroy whose intent it finds (:func:`recover`) and deletes any trash left
(:func:`sweep`), so a re-spawned name never sees an old agent's history.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from hivekit import deploy, events, outbox
from hivekit.hive import Hive
from hivekit.records import AgentSpec

log = logging.getLogger("hivekit.teardown")

TRASH = "trash"


def trash_dir(hive: Hive, name: str) -> Path:
    """Where a purge moves ``name``'s folders before deleting them (same filesystem)."""
    return hive.paths.state_dir / TRASH / name


def destroy(hive: Hive, agent: AgentSpec, *, purge: bool) -> None:
    """Destroy (``purge``: and delete) ``agent``, under its lock; the caller validated it.

    The plugins' ``destroy`` raising undoes the intent and re-raises: nothing changed.
    """
    name = agent.name
    previous = hive.store.wanted().get(name)  # None for a tombstone
    if purge:
        shutil.rmtree(trash_dir(hive, name), ignore_errors=True)  # an earlier purge's leftover
    hive.store.doom(name, purge=purge)
    hive.checkpoint("purge.marked" if purge else "destroy.marked", name)
    try:
        hive.hook.destroy(hive=hive, agent=agent, purge=purge)
    except BaseException:
        if previous is None:
            hive.store.remove_agent(name)
        else:
            hive.store.add_agent(name)
            hive.store.set_wanted(name, previous)
        raise
    _finish(hive, agent, purge=purge)


def _finish(hive: Hive, agent: AgentSpec, *, purge: bool) -> None:
    """Everything after the plugins' ``destroy`` returned; each step survives a crash."""
    name, p = agent.name, agent.paths
    op = "purge" if purge else "destroy"
    hive.checkpoint(f"{op}.destroyed", name)
    shutil.rmtree(p.runtime, ignore_errors=True)
    trash = trash_dir(hive, name)
    if purge:
        trash.mkdir(parents=True, exist_ok=True)
        if p.root.exists():
            os.rename(p.root, trash / "agent")
            hive.checkpoint("purge.trashed-agent", name)
        if p.applied.exists():
            os.rename(p.applied, trash / "applied")
            hive.checkpoint("purge.trashed-applied", name)
    note = "agent purged" if purge else "agent destroyed"
    with outbox.record(hive) as out:
        hive.store.remove_agent(name)
        failed = deploy.fail_pending(hive, out, name, note, tag=not purge)
        out.notify_manager(events.DestroyedHelper(agent=name, purge=purge))
    hive.checkpoint(f"{op}.removed", name)
    if purge:
        shutil.rmtree(trash)
        hive.history.forget(name)  # its live log's history goes with it (memory only)
        hive.checkpoint("purge.deleted", name)
    else:
        for approval in failed:
            deploy.plant_tag(hive, approval)
        hive.checkpoint("destroy.tagged", name)
    out.deliver()
    hive.checkpoint(f"{op}.delivered", name)


def discard_seeded(hive: Hive, agent: AgentSpec) -> None:
    """Remove the repos a failed spawn of a new agent seeded, through the trash (one rename
    each, so a crash leaves them whole or gone); its notes and creds dirs go only when empty
    (the operator may have put creds there before the spawn)."""
    p = agent.paths
    trash = trash_dir(hive, agent.name)
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir(parents=True)
    for src, name in ((p.config, "config"), (p.applied, "applied")):
        if src.exists():
            os.rename(src, trash / name)
    for d in (p.state, p.creds, p.root):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty
    shutil.rmtree(trash)


def recover(hive: Hive) -> None:
    """Finish every destroy a previous daemon left under way (startup)."""
    for name, purge in hive.store.doomed().items():
        agent = hive.agent(name)
        log.warning("finishing the %s of %r, interrupted by a stop",
                    "purge" if purge else "destroy", name)
        try:
            # Folders in the trash: the plugins' destroy returned before the first move.
            if not (purge and trash_dir(hive, name).exists()):
                hive.hook.destroy(hive=hive, agent=agent, purge=purge)
            _finish(hive, agent, purge=purge)
            hive.view.refresh(name)  # no operation ends here to remake its row
            hive.call_each("agent_destroyed", hive=hive, agent=agent, purge=purge,
                           reason=("purged" if purge else "destroyed")
                           + " by the operator (finished at the daemon's start)")
        except Exception as exc:
            # Left as it is (the intent stays; the next start tries again): the operator sees
            # a tombstone, and `hivekit destroy NAME --purge` retries it.
            log.error("could not finish destroying %r: %s", name, deploy.describe(exc))


def sweep(hive: Hive) -> None:
    """Delete what nothing owns (startup): trash no destroy under way needs, runtime dirs of
    agents that are not registered, and a crashed spawn's half-seeded staging repos."""
    doomed = hive.store.doomed()
    live = set(hive.store.agent_names())
    leftovers = [d for d in _entries(hive.paths.state_dir / TRASH) if d.name not in doomed]
    leftovers += [d for d in _entries(hive.paths.runtime_dir / "agents") if d.name not in live]
    leftovers += [d for d in _entries(hive.paths.applied_root) if d.name.endswith(".new")]
    leftovers += [d / "config.new" for d in _entries(hive.paths.agents_root)
                  if (d / "config.new").exists()]
    for path in leftovers:
        log.info("removing %s (left by an interrupted operation)", path)
        shutil.rmtree(path, ignore_errors=True)


def _entries(root: Path) -> list[Path]:
    try:
        return sorted(root / name for name in os.listdir(root))
    except FileNotFoundError:
        return []
