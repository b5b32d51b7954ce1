"""The git-audited deploy: what approving, denying and recovering an approval does to the repos.

The applied repo's tags are the audit trail (DESIGN.md, "Approvals and the git-audited deploy"):

* ``proposal/<id>``: the commit asked for, fetched from the proposed repo at request time.
* ``approved/<id>``, ``building/<id>``: the operator approved; a build started.
* ``deployed/<id>``: the build succeeded and ``main`` is the proposal.
* ``failed/<id>`` (annotated, body = the error): the build failed or was interrupted; ``main`` is
  back where it was.
* ``denied/<id>`` (annotated, body = the operator's note).
* ``deployed/0``: the agent's first config, at spawn.

Crash safety: the approval's status is ``running`` (with ``main``'s previous sha) before the first
tag is planted, so startup recovery (:func:`recover`) finds every interrupted deploy and finishes
it honestly: ``deployed/<id>`` present means the build succeeded, anything less means it failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from pathlib import Path

from hivekit import events, hookimpl
from hivekit.errors import BadRequest, HiveError, OperationFailed, describe
from hivekit.git import Repo, check_proposed
from hivekit.hive import Hive
from hivekit.paths import private_dir
from hivekit.records import (
    AgentSpec,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Deploy,
    Transient,
)

log = logging.getLogger("hivekit.deploy")

MAIN = "refs/heads/main"
INTERRUPTED = "interrupted: the daemon stopped during the deploy; the previous config is kept"


# --- repos -----------------------------------------------------------------------------------

#: How a refusal of a proposed repo ends (see :func:`proposed_repo`).
ONLY_INSIDE = "hivekit only reads repositories inside the agent's folder"


def proposed_repo(hive: Hive, agent: AgentSpec) -> Repo:
    """The agent's proposed repo, opened by hivekit's rules (:func:`hivekit.git.check_proposed`)
    before anything reads or fetches from it: the manager writes it, and could otherwise point
    the daemon at another repository.

    :raises BadRequest: it is not a plain repository inside the agent's folder; the message
        says what is wrong with it.
    """
    reason = check_proposed(agent.paths.config, hive.paths.agents_root)
    if reason is not None:
        raise BadRequest(f"agent {agent.name!r}: {reason}; {ONLY_INSIDE}")
    return Repo(agent.paths.config)


def seed(hive: Hive, agent: AgentSpec, template: str | None = None) -> bool:
    """Create the agent's repos and dirs unless they exist; True if the repos were new.

    The proposed repo gets every plugin's ``initial_config_files`` (for ``template``, None for
    the default seed) committed as "hivekit init"
    and a remote ``applied``; the applied repo fetches its ``main`` and tags ``deployed/0``.
    A tombstone's repos are kept as they are (its history and creds are reused).
    """
    p = agent.paths
    p.state.mkdir(parents=True, exist_ok=True)
    private_dir(p.runtime)
    p.creds.mkdir(parents=True, exist_ok=True)
    os.chmod(p.creds, 0o700)
    proposed, applied = Repo(p.config), Repo(p.applied)
    # Anything at all at config/ (a tombstone's repo, or what the manager made of it) is kept.
    fresh = not os.path.lexists(p.config)
    if fresh:
        files = initial_files(hive, agent, template)
        tmp = p.config.with_name("config.new")
        shutil.rmtree(tmp, ignore_errors=True)
        staging = Repo(tmp)
        staging.init()
        for rel, content in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        staging.commit_all("hivekit init")
        staging("remote", "add", "applied", str(p.applied))
        # Renamed into place only when complete: a crash never leaves a half-seeded repo.
        tmp.rename(p.config)
    if not applied.exists():
        tmp = p.applied.with_name(p.applied.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        staging = Repo(tmp)
        # A tombstone's kept repo is the manager's to write: opened by the rules.
        source = proposed if fresh else proposed_repo(hive, agent)
        staging.init()
        staging.fetch(source.git_dir, "refs/heads/main")
        sha = staging.rev("FETCH_HEAD")
        assert sha is not None
        staging.update_ref(MAIN, sha)
        staging.sync_worktree()
        staging.tag("deployed/0", sha)
        tmp.rename(p.applied)
        fresh = True
    return fresh


def initial_files(hive: Hive, agent: AgentSpec, template: str | None = None) -> dict[str, str]:
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for plugin, call in hive.each("initial_config_files", hive=hive, agent=agent,
                                  template=template):
        for rel, content in (call() or {}).items():
            if rel in owner:
                raise OperationFailed(
                    f"plugins {owner[rel]!r} and {plugin!r} both seed {rel!r}; "
                    "disable one of them")
            _check_relpath(rel, plugin)
            owner[rel] = plugin
            merged[rel] = content
    return merged


def _check_relpath(rel: str, plugin: str) -> None:
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] == ".git":
        raise OperationFailed(f"plugin {plugin!r} seeds an invalid path {rel!r}")


# --- approving an apply ----------------------------------------------------------------------


def approve_apply(hive: Hive, approval: Approval) -> Approval:
    """Deploy an apply approval (synchronously, under the agent's lock); returns it resolved."""
    agent = hive.agent(approval.agent)
    with hive.begin(agent.name, Transient.REBUILDING):
        resolved = _deploy(hive, agent, approval)
    if resolved.status == ApprovalStatus.APPROVED:
        hive.call_each("agent_started", hive=hive, agent=agent,
                       reason=f"deployed approval #{approval.id}")
    return resolved


def _deploy(hive: Hive, agent: AgentSpec, approval: Approval) -> Approval:
    repo = Repo(agent.paths.applied)
    prev = repo.ref(MAIN)
    # Written before the first tag: from here on, a crash is found and finished at startup.
    approval = hive.store.claim(approval.id, prev_sha=prev)
    hive.bus.publish(events.ApprovalChanged(approval=approval))
    deploy = Deploy(approval_id=approval.id, agent=agent, sha=approval.sha or "",
                    prev_sha=prev or "")
    try:
        proposal = repo.ref(f"refs/tags/proposal/{approval.id}")
        if proposal is None or prev is None:
            raise OperationFailed(
                f"the applied repo of {agent.name!r} lacks proposal/{approval.id} or main")
        repo.create_refs({f"refs/tags/approved/{approval.id}": proposal,
                          f"refs/tags/building/{approval.id}": proposal})
        _step(hive, deploy, "tagged")
        repo.update_ref(MAIN, proposal)
        repo.sync_worktree()
        _step(hive, deploy, "main-moved")
        _step(hive, deploy, "prepare")
        hive.hook.prepare_deploy(hive=hive, deploy=deploy)
        _step(hive, deploy, "build")
        hive.hook.rebuild(hive=hive, agent=agent, deploy=deploy)
    except Exception as exc:
        if not isinstance(exc, HiveError):
            log.exception("deploy of approval #%s failed", approval.id)
        return _fail(hive, repo, approval, deploy, describe(exc))
    repo.tag(deploy.deployed_tag, proposal)
    _step(hive, deploy, "deployed")
    return _succeed(hive, approval, deploy)


def _step(hive: Hive, deploy: Deploy, step: str) -> None:
    hive.log_event(deploy.agent.name, events.DeployStep(
        approval_id=deploy.approval_id, agent=deploy.agent.name, step=step))
    hive.call_each("deploy_step", hive=hive, deploy=deploy, step=step)


def _succeed(hive: Hive, approval: Approval, deploy: Deploy) -> Approval:
    hive.call_each("finalize_deploy", hive=hive, deploy=deploy)
    resolved = hive.store.resolve(approval.id, ApprovalStatus.APPROVED,
                                  expect=ApprovalStatus.RUNNING, tag=deploy.deployed_tag)
    _step(hive, deploy, "finalized")
    _announce(hive, resolved)
    hive.send("system", approval.agent,
              f"config update applied: approval #{approval.id} deployed "
              f"{(approval.sha or '')[:12]} ({deploy.deployed_tag})")
    return resolved


def _fail(hive: Hive, repo: Repo, approval: Approval, deploy: Deploy, note: str) -> Approval:
    tag = f"failed/{approval.id}"
    if repo.ref(f"refs/tags/proposal/{approval.id}") and not repo.has_tag(tag):
        repo.tag(tag, f"refs/tags/proposal/{approval.id}", note)
    if deploy.prev_sha:
        repo.update_ref(MAIN, deploy.prev_sha)
        repo.sync_worktree()
    hive.call_each("abort_deploy", hive=hive, deploy=deploy, reason=note)
    resolved = hive.store.resolve(approval.id, ApprovalStatus.FAILED,
                                  expect=ApprovalStatus.RUNNING, note=note,
                                  tag=tag if repo.has_tag(tag) else None)
    _announce(hive, resolved)
    return resolved


def _announce(hive: Hive, approval: Approval) -> None:
    """Tell the bus, the manager (helper events) and the observers that ``approval`` ended."""
    hive.log_event(approval.agent, events.ApprovalChanged(approval=approval))
    ok = approval.status == ApprovalStatus.APPROVED
    hive.notify_manager(events.ApprovalResolvedHelper(
        id=approval.id, kind=approval.kind.value, agent=approval.agent,
        status=approval.status.value, commit=approval.commit, sha=approval.sha,
        tag=approval.tag, note=approval.note, ref=approval.ref))
    if approval.kind == ApprovalKind.SPAWN and approval.status != ApprovalStatus.DENIED:
        hive.notify_manager(events.SpawnedHelper(agent=approval.agent, ok=ok, sha=approval.sha,
                                                 note=approval.note))
    elif approval.kind == ApprovalKind.APPLY and approval.status != ApprovalStatus.DENIED:
        hive.notify_manager(events.RebuiltHelper(agent=approval.agent, ok=ok, sha=approval.sha,
                                                 tag=approval.tag, note=approval.note))
    hive.call_each("approval_resolved", hive=hive, approval=approval)


# --- approving a spawn -----------------------------------------------------------------------


def approve_spawn(hive: Hive, approval: Approval) -> Approval:
    """Start the spawn in the background; returns the approval as ``running`` at once.

    The ``spawning`` transient shows from before this returns until the spawn ends.
    """
    op = hive.begin(approval.agent, Transient.SPAWNING)
    try:
        approval = hive.store.claim(approval.id)
    except BaseException:
        op.release()
        raise
    hive.bus.publish(events.ApprovalChanged(approval=approval))

    def work() -> None:
        agent = hive.agent(approval.agent)
        respawn = agent.paths.config.exists()  # a tombstone: its repos stay whatever happens
        with op:  # its end makes the new agent's row (or removes the spawning one)
            result = _run_spawn(hive, approval, agent, respawn)
        _announce(hive, result)
        if result.status == ApprovalStatus.APPROVED:
            hive.call_each("agent_started", hive=hive, agent=agent, reason="spawned")
        else:
            hive.call_each("agent_destroyed", hive=hive, agent=agent, purge=not respawn,
                           reason=f"its spawn failed: {result.note}")

    threading.Thread(target=work, name=f"spawn-{approval.agent}", daemon=True).start()
    return approval


def _run_spawn(hive: Hive, approval: Approval, agent: AgentSpec, respawn: bool) -> Approval:
    try:
        fresh = seed(hive, agent, approval.template)
        hive.hook.spawn(hive=hive, agent=agent)
    except Exception as exc:
        if not isinstance(exc, HiveError):
            log.exception("spawn of %r failed", agent.name)
        clean_failed_spawn(hive, agent, purge=not respawn)
        return hive.store.resolve(approval.id, ApprovalStatus.FAILED,
                                  expect=ApprovalStatus.RUNNING, note=describe(exc))
    hive.store.add_agent(agent.name)
    sha = Repo(agent.paths.applied).ref(MAIN)
    return hive.store.resolve(approval.id, ApprovalStatus.APPROVED,
                              expect=ApprovalStatus.RUNNING, sha=sha,
                              tag="deployed/0" if fresh else None)


def clean_failed_spawn(hive: Hive, agent: AgentSpec, *, purge: bool) -> None:
    """After a failed spawn: the backend's ``destroy`` (it removes what it half-made), then,
    for a new agent (``purge``), the repos the spawn seeded, so that nothing is left: no
    container, no tombstone. A re-spawned tombstone stays the tombstone it was. The caller
    tells the ``agent_destroyed`` observers once it released the agent's lock."""
    try:
        hive.hook.destroy(hive=hive, agent=agent, purge=purge)
    except Exception:
        log.exception("cleaning up the failed spawn of %r failed", agent.name)
    if purge:
        remove_state(agent, keep_own_dirs=True)
    shutil.rmtree(agent.paths.runtime, ignore_errors=True)


def remove_state(agent: AgentSpec, *, keep_own_dirs: bool = False) -> None:
    """Delete the agent's repos, and its notes and creds unless ``keep_own_dirs`` (then they
    go only when empty: a failed spawn leaves what the operator put there, such as creds)."""
    p = agent.paths
    if not keep_own_dirs:
        shutil.rmtree(p.root, ignore_errors=True)
    else:
        shutil.rmtree(p.config, ignore_errors=True)
        for d in (p.state, p.creds, p.root):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty
    shutil.rmtree(p.applied, ignore_errors=True)


def spawn_manager(hive: Hive) -> None:
    """Bring the manager up without an approval (it is declared by the operator's config).

    A failed spawn is cleaned up like any other, except that the manager's repos stay: the
    next start tries again with them.
    """
    agent = hive.agent(hive.manager)
    failed: Exception | None = None
    with hive.begin(agent.name, Transient.SPAWNING):
        try:
            seed(hive, agent)
            hive.hook.spawn(hive=hive, agent=agent)
        except Exception as exc:
            clean_failed_spawn(hive, agent, purge=False)
            failed = exc
        else:
            hive.store.add_agent(agent.name)
    if failed is not None:
        hive.call_each("agent_destroyed", hive=hive, agent=agent, purge=False,
                       reason=f"its spawn failed: {describe(failed)}")
        raise failed
    hive.call_each("agent_started", hive=hive, agent=agent, reason="spawned")


# --- denying ---------------------------------------------------------------------------------


def deny(hive: Hive, approval: Approval, note: str) -> Approval:
    """Deny a pending approval; an apply's proposal gets the annotated ``denied/<id>`` tag."""
    tag = f"denied/{approval.id}" if approval.kind == ApprovalKind.APPLY else None
    # The status moves first (exactly once, racing approve safely); the tag follows, and
    # recovery plants it if the daemon died in between.
    resolved = hive.store.resolve(approval.id, ApprovalStatus.DENIED,
                                  expect=ApprovalStatus.PENDING, note=note, tag=tag)
    if tag:
        _plant_denied(hive, resolved)
    _announce(hive, resolved)
    return resolved


def _plant_denied(hive: Hive, approval: Approval) -> None:
    repo = Repo(hive.agent(approval.agent).paths.applied)
    proposal = f"refs/tags/proposal/{approval.id}"
    if repo.exists() and repo.ref(proposal) and not repo.has_tag(f"denied/{approval.id}"):
        repo.tag(f"denied/{approval.id}", proposal, approval.note or "")


def fail_pending(hive: Hive, agent: str, note: str, *, tag: bool) -> list[Approval]:
    """Fail every pending approval of ``agent`` (its agent was destroyed)."""
    failed = []
    repo = Repo(hive.agent(agent).paths.applied)
    for approval in hive.store.approvals(ApprovalStatus.PENDING, agent=agent):
        name = None
        if tag and approval.kind == ApprovalKind.APPLY and repo.exists():
            proposal = f"refs/tags/proposal/{approval.id}"
            if repo.ref(proposal):
                name = f"failed/{approval.id}"
                repo.tag(name, proposal, note)
        resolved = hive.store.resolve(approval.id, ApprovalStatus.FAILED,
                                      expect=ApprovalStatus.PENDING, note=note, tag=name)
        _announce(hive, resolved)
        failed.append(resolved)
    return failed


# --- recovery --------------------------------------------------------------------------------


def recover(hive: Hive) -> list[Approval]:
    """Finish every approval a previous daemon left ``running``; returns them resolved."""
    finished = []
    for approval in hive.store.approvals(ApprovalStatus.RUNNING):
        log.warning("recovering approval #%s (%s %s), interrupted by a stop",
                    approval.id, approval.kind.value, approval.agent)
        if approval.kind == ApprovalKind.APPLY:
            finished.append(_recover_apply(hive, approval))
        else:
            finished.append(_recover_spawn(hive, approval))
    for approval in hive.store.approvals(ApprovalStatus.DENIED):
        if approval.tag:
            _plant_denied(hive, approval)
    return finished


def _recover_apply(hive: Hive, approval: Approval) -> Approval:
    agent = hive.agent(approval.agent)
    repo = Repo(agent.paths.applied)
    deploy = Deploy(approval_id=approval.id, agent=agent, sha=approval.sha or "",
                    prev_sha=approval.prev_sha or "")
    if repo.has_tag(deploy.deployed_tag):
        return _succeed(hive, approval, deploy)
    return _fail(hive, repo, approval, deploy, INTERRUPTED)


def _recover_spawn(hive: Hive, approval: Approval) -> Approval:
    agent = hive.agent(approval.agent)
    if not hive.store.has_agent(agent.name):
        # A half-made container would otherwise linger unseen; the repos stay (a tombstone).
        try:
            hive.hook.destroy(hive=hive, agent=agent, purge=False)
        except Exception:
            log.exception("cleaning up the interrupted spawn of %r failed", agent.name)
    resolved = hive.store.resolve(approval.id, ApprovalStatus.FAILED,
                                  expect=ApprovalStatus.RUNNING,
                                  note="interrupted: the daemon stopped during the spawn")
    _announce(hive, resolved)
    return resolved


class Recovery:
    """The core's own startup work, registered as plugin ``core``."""

    @hookimpl(tryfirst=True)
    def startup(self, hive: Hive) -> None:
        hive.ensure_dirs()
        recover(hive)
