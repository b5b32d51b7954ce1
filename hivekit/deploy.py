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
Before the backend's build starts, the agent is marked ``building`` in the store: a deploy that
fails after that point (interrupted, or its ``deployed/<id>`` tag unwritable) brings the
container back to the restored ``main`` with a rebuild, or marks the agent ``needs rebuild`` when
that fails too. Every terminal status is written with the messages it owes in one transaction
(:mod:`hivekit.outbox`), and every durable step is a declared crash point
(:mod:`hivekit.crashpoints`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from hivekit import events, hookimpl, outbox, remotes, verify, wake
from hivekit.errors import BadRequest, HiveError, OperationFailed, describe
from hivekit.git import Repo, check_proposed
from hivekit.hive import SYSTEM, Hive
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
SPAWN_INTERRUPTED = "interrupted: the daemon stopped during the spawn"
#: The store's rebuild marks (``agents.rebuild``).
BUILDING, NEEDED = "building", "needed"


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
        # Named as the manager sees the applied repo (see hivekit.remotes).
        staging("remote", "add", remotes.REMOTE, remotes.url_for(hive, agent.name))
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
        repo = Repo(agent.paths.applied)
        prev = repo.ref(MAIN)
        # Written before the first tag: from here on, a crash is found and finished at startup.
        approval = hive.store.claim(approval.id, prev_sha=prev)
        if prev:
            hive.deploying[agent.name] = prev
        try:
            hive.bus.publish(events.ApprovalChanged(approval=approval))
            hive.checkpoint("apply.running", agent.name)
            deploy = Deploy(approval_id=approval.id, agent=agent, sha=approval.sha or "",
                            prev_sha=prev or "")
            resolved = _deploy(hive, repo, approval, deploy)
        finally:
            hive.deploying.pop(agent.name, None)
    if resolved.status == ApprovalStatus.APPROVED:
        hive.call_each("agent_started", hive=hive, agent=agent,
                       reason=f"deployed approval #{approval.id}")
    return resolved


def _deploy(hive: Hive, repo: Repo, approval: Approval, deploy: Deploy) -> Approval:
    agent = deploy.agent
    restore = None
    built = verified = False
    try:
        proposal = repo.ref(f"refs/tags/proposal/{approval.id}")
        if proposal is None or not deploy.prev_sha:
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
        # From here the container may change: a failure must bring it back to main.
        restore = hive.store.rebuild_mark(agent.name) or (None, None)
        hive.store.set_rebuild(agent.name, BUILDING, f"the deploy of approval #{approval.id}")
        _step(hive, deploy, "build")
        hive.hook.rebuild(hive=hive, agent=agent, deploy=deploy)
        built = True
        hive.checkpoint("apply.built", agent.name)
        # A deploy succeeds when the agent runs with it, not when the build returned.
        hive.shift(agent.name, Transient.VERIFYING)
        _step(hive, deploy, "verify")
        verify.verify(hive, agent, deploy)
        verified = True
        repo.tag(deploy.deployed_tag, proposal)
    except Exception as exc:
        if not isinstance(exc, HiveError):
            log.exception("deploy of approval #%s failed", approval.id)
        if hive.transients().get(agent.name) == Transient.VERIFYING:
            hive.shift(agent.name, Transient.REBUILDING)  # the rollback rebuilds it
        reason = describe(exc)
        if isinstance(exc, verify.Unhealthy):
            reason = f"deployed, then rolled back: {reason}{_last_output(hive, agent)}"
        elif verified:
            reason = f"the build succeeded, but {deploy.deployed_tag} could not be tagged: {reason}"
        # A build that failed leaves the container as it was (the backend said so); one that
        # succeeded runs the proposal, which the tags will call failed: rebuild it from main.
        return _fail(hive, repo, approval, deploy, reason, reconverge=built, restore=restore)
    _step(hive, deploy, "deployed")
    return _succeed(hive, approval, deploy)


def _last_output(hive: Hive, agent: AgentSpec, lines: int = 10) -> str:
    """The agent's last output lines as its backend reported them, for a failure's note."""
    tail = hive.view.last_output(agent.name)[-lines:]
    return "\nits last output:\n" + "\n".join(tail) if tail else ""


def _step(hive: Hive, deploy: Deploy, step: str) -> None:
    hive.log_event(deploy.agent.name, events.DeployStep(
        approval_id=deploy.approval_id, agent=deploy.agent.name, step=step))
    hive.call_each("deploy_step", hive=hive, deploy=deploy, step=step)
    hive.checkpoint(step, deploy.agent.name)


def _succeed(hive: Hive, approval: Approval, deploy: Deploy) -> Approval:
    hive.call_each("finalize_deploy", hive=hive, deploy=deploy)
    woken = wake.message(hive, deploy.agent,
                         f"config update applied: approval #{approval.id} deployed "
                         f"{(approval.sha or '')[:12]} ({deploy.deployed_tag})")
    with outbox.record(hive) as out:
        resolved = hive.store.resolve(approval.id, ApprovalStatus.APPROVED,
                                      expect=ApprovalStatus.RUNNING, tag=deploy.deployed_tag)
        hive.store.set_rebuild(approval.agent, None)
        _tell(out, resolved)
        out.send(SYSTEM, approval.agent, woken)
    _step(hive, deploy, "finalized")
    out.deliver()
    hive.checkpoint("apply.delivered", approval.agent)
    return resolved


def _fail(hive: Hive, repo: Repo, approval: Approval, deploy: Deploy, reason: str, *,
          reconverge: bool, restore: tuple[str | None, str | None] | None = None) -> Approval:
    """Roll a failed (or interrupted) apply back: ``main``, ``abort_deploy``, the container when
    ``reconverge`` (else the rebuild mark this deploy set goes back to ``restore``),
    ``failed/<id>``, the status with its messages. Each step is a crash point; recovery repeats
    what is left."""
    name = deploy.agent.name
    hive.store.set_note(approval.id, reason)
    hive.checkpoint("apply.failing", name)
    if deploy.prev_sha:
        repo.update_ref(MAIN, deploy.prev_sha)
        repo.sync_worktree()
    hive.checkpoint("apply.rolled-back", name)
    hive.call_each("abort_deploy", hive=hive, deploy=deploy, reason=reason)
    hive.checkpoint("apply.aborted", name)
    note = reason
    if reconverge:
        note = reason + "\n\n" + reconverge_container(hive, deploy.agent, approval_id=approval.id)
        hive.checkpoint("apply.reconverged", name)
    elif restore is not None:
        hive.store.set_rebuild(name, *restore)
    tag = f"failed/{approval.id}"
    proposal = f"refs/tags/proposal/{approval.id}"
    if repo.ref(proposal) and not repo.has_tag(tag):
        try:
            repo.tag(tag, proposal, note)
        except Exception as exc:  # the status must still end: failed, without its tag
            log.error("could not tag %s for approval #%s: %s", tag, approval.id, describe(exc))
    hive.checkpoint("apply.failed-tagged", name)
    with outbox.record(hive) as out:
        resolved = hive.store.resolve(approval.id, ApprovalStatus.FAILED,
                                      expect=ApprovalStatus.RUNNING, note=note,
                                      tag=tag if repo.has_tag(tag) else None)
        _tell(out, resolved)
    hive.checkpoint("apply.failed", name)
    out.deliver()
    hive.checkpoint("apply.failed-delivered", name)
    return resolved


def reconverge_container(hive: Hive, agent: AgentSpec, *, approval_id: int | None = None) -> str:
    """Rebuild ``agent``'s container from its applied ``main`` (the backend's rebuild with
    ``deploy=None``) because it may run something else; returns what happened, in words.

    The store's rebuild mark and the note that says what became of the container are written in
    one transaction: cleared when the rebuild succeeded, ``needed`` (with the error and the fix)
    when it failed.
    """
    sha = (Repo(agent.paths.applied).ref(MAIN) or "")[:12]
    hive.store.set_rebuild(agent.name, BUILDING,
                           f"rolling back approval #{approval_id}" if approval_id
                           else "re-running an interrupted rebuild")
    hive.log(agent.name, f"rebuilding {agent.name} from main ({sha}): it may run another config")
    try:
        hive.hook.rebuild(hive=hive, agent=agent, deploy=None)
    except Exception as exc:
        if not isinstance(exc, HiveError):
            log.exception("rebuilding %r from main failed", agent.name)
        error = describe(exc)
        what = (f"the rebuild from main ({sha}) to bring the container back failed: {error}\n"
                f"{agent.name} is marked `needs rebuild`; run `hivekit rebuild {agent.name}`")
        hive.store.set_rebuild(agent.name, NEEDED, what)
        hive.refresh(agent)  # its badge (recovery runs in no operation that would remake it)
        return what
    hive.store.set_rebuild(agent.name, None)
    hive.refresh(agent)
    return f"rolled back: {agent.name} was rebuilt from main ({sha}) and runs it again"


def _tell(out: outbox.Outcome, approval: Approval, *, ran: bool = True) -> None:
    """What every party is owed when ``approval`` ended: the bus, the manager's helper events
    and the ``approval_resolved`` observers (written with the transition, in ``out``).

    ``ran=False``: the approval failed without running (its agent was destroyed or purged): the
    manager hears ``approval_resolved`` alone (then ``destroyed``, from the destroy), never a
    ``spawned``/``rebuilt`` for a spawn or rebuild that did not happen."""
    out.publish(events.ApprovalChanged(approval=approval))
    ok = approval.status == ApprovalStatus.APPROVED
    out.notify_manager(events.ApprovalResolvedHelper(
        id=approval.id, kind=approval.kind.value, agent=approval.agent,
        status=approval.status.value, commit=approval.commit, sha=approval.sha,
        tag=approval.tag, note=approval.note, ref=approval.ref))
    if not ran or approval.status == ApprovalStatus.DENIED:
        pass
    elif approval.kind == ApprovalKind.SPAWN:
        out.notify_manager(events.SpawnedHelper(agent=approval.agent, ok=ok, sha=approval.sha,
                                                note=approval.note))
    elif approval.kind == ApprovalKind.APPLY:
        out.notify_manager(events.RebuiltHelper(agent=approval.agent, ok=ok, sha=approval.sha,
                                                tag=approval.tag, note=approval.note))
    out.approval_resolved(approval)


# --- approving a spawn -----------------------------------------------------------------------


def approve_spawn(hive: Hive, approval: Approval) -> Approval:
    """Start the spawn in the background; returns the approval as ``running`` at once.

    The ``spawning`` transient shows from before this returns until the spawn ends.
    """
    op = hive.begin(approval.agent, Transient.SPAWNING)
    agent = hive.agent(approval.agent)
    try:
        # A tombstone's repos stay whatever happens; a new agent's go if the spawn fails. Which
        # it is, is recorded with the claim (for recovery): prev_sha is the tombstone's sha.
        approval = hive.store.claim(approval.id, prev_sha=_tombstone_sha(agent))
    except BaseException:
        op.release()
        raise
    hive.bus.publish(events.ApprovalChanged(approval=approval))
    hive.checkpoint("spawn.running", approval.agent)
    respawn = approval.prev_sha is not None

    def work() -> None:
        with op:  # its end makes the new agent's row (or removes the spawning one)
            result, out = _run_spawn(hive, approval, agent, respawn)
        out.deliver()
        ok = result.status == ApprovalStatus.APPROVED
        hive.checkpoint("spawn.delivered" if ok else "spawn.failed-delivered", approval.agent)
        if ok:
            hive.call_each("agent_started", hive=hive, agent=agent, reason="spawned")
        else:
            hive.call_each("agent_destroyed", hive=hive, agent=agent, purge=not respawn,
                           reason=f"its spawn failed: {result.note}")

    threading.Thread(target=work, name=f"spawn-{approval.agent}", daemon=True).start()
    return approval


def _run_spawn(hive: Hive, approval: Approval, agent: AgentSpec,
               respawn: bool) -> tuple[Approval, outbox.Outcome]:
    try:
        fresh = seed(hive, agent, approval.template)
        hive.checkpoint("spawn.seeded", agent.name)
        hive.hook.spawn(hive=hive, agent=agent)
        hive.checkpoint("spawn.built", agent.name)
        verify.verify(hive, agent, None)
    except Exception as exc:
        if not isinstance(exc, HiveError):
            log.exception("spawn of %r failed", agent.name)
        reason = describe(exc)
        if isinstance(exc, verify.Unhealthy):
            reason = f"spawned, then removed: {reason}{_last_output(hive, agent)}"
        return _spawn_failed(hive, approval, agent, reason, respawn=respawn)
    sha = Repo(agent.paths.applied).ref(MAIN)
    with outbox.record(hive) as out:
        hive.store.add_agent(agent.name)
        resolved = hive.store.resolve(approval.id, ApprovalStatus.APPROVED,
                                      expect=ApprovalStatus.RUNNING, sha=sha,
                                      tag="deployed/0" if fresh else None)
        _tell(out, resolved)
    hive.checkpoint("spawn.approved", agent.name)
    return resolved, out


def _tombstone_sha(agent: AgentSpec) -> str | None:
    """The sha a tombstone's applied (else proposed) repo is at; None for a new agent."""
    if not agent.paths.config.exists():
        return None
    return Repo(agent.paths.applied).ref(MAIN) or Repo(agent.paths.config).ref(MAIN) or ""


def _spawn_failed(hive: Hive, approval: Approval, agent: AgentSpec, reason: str, *,
                  respawn: bool) -> tuple[Approval, outbox.Outcome]:
    """Fail a spawn: its reason recorded, what it half-made removed (see
    :func:`clean_failed_spawn`), then the status with its messages."""
    hive.store.set_note(approval.id, reason)
    clean_failed_spawn(hive, agent, purge=not respawn)
    hive.checkpoint("spawn.cleaned", agent.name)
    with outbox.record(hive) as out:
        resolved = hive.store.resolve(approval.id, ApprovalStatus.FAILED,
                                      expect=ApprovalStatus.RUNNING, note=reason)
        _tell(out, resolved)
    hive.checkpoint("spawn.failed", agent.name)
    return resolved, out


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
        from hivekit import teardown

        teardown.discard_seeded(hive, agent)
    shutil.rmtree(agent.paths.runtime, ignore_errors=True)


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
    # The status moves first (exactly once, racing approve safely), with the messages it owes;
    # the tag follows, and startup plants it if the daemon died in between (see repair_tags).
    with outbox.record(hive) as out:
        resolved = hive.store.resolve(approval.id, ApprovalStatus.DENIED,
                                      expect=ApprovalStatus.PENDING, note=note, tag=tag)
        _tell(out, resolved)
    hive.checkpoint("deny.denied", approval.agent)
    if tag:
        plant_tag(hive, resolved)
        hive.checkpoint("deny.tagged", approval.agent)
    out.deliver()
    hive.checkpoint("deny.delivered", approval.agent)
    return resolved


def plant_tag(hive: Hive, approval: Approval) -> None:
    """Plant the annotated ``denied/<id>`` or ``failed/<id>`` tag a resolved apply records
    (body = its note) at its proposal, unless it is there or the repo is gone."""
    tag = approval.tag
    if not tag or approval.kind != ApprovalKind.APPLY or tag.startswith("deployed/"):
        return
    repo = Repo(hive.agent(approval.agent).paths.applied)
    proposal = f"refs/tags/proposal/{approval.id}"
    if repo.exists() and repo.ref(proposal) and not repo.has_tag(tag):
        repo.tag(tag, proposal, approval.note or "")


def fail_pending(hive: Hive, out: outbox.Outcome, agent: str, note: str, *,
                 tag: bool) -> list[Approval]:
    """Fail every pending approval of ``agent`` (it is being destroyed), inside ``out``'s
    transaction; with ``tag``, each apply records ``failed/<id>``, planted by the caller after
    the commit (:func:`plant_tag`)."""
    failed = []
    repo = Repo(hive.agent(agent).paths.applied)
    for approval in hive.store.approvals(ApprovalStatus.PENDING, agent=agent):
        name = None
        if (tag and approval.kind == ApprovalKind.APPLY and repo.exists()
                and repo.ref(f"refs/tags/proposal/{approval.id}")):
            name = f"failed/{approval.id}"
        resolved = hive.store.resolve(approval.id, ApprovalStatus.FAILED,
                                      expect=ApprovalStatus.PENDING, note=note, tag=name)
        _tell(out, resolved, ran=False)
        failed.append(resolved)
    return failed


# --- recovery --------------------------------------------------------------------------------


def repair_tags(hive: Hive, out: outbox.Outcome) -> None:
    """Before an undelivered outcome is delivered at startup: plant the tags its approvals
    record (the daemon may have died between the status and the tag)."""
    for approval_id in out.resolved:
        try:
            plant_tag(hive, hive.store.approval(approval_id))
        except Exception:
            log.exception("could not plant the tag of approval #%s", approval_id)


def recover(hive: Hive) -> list[Approval]:
    """Finish every approval a previous daemon left ``running``; returns them resolved.

    Then re-run every rebuild left under way (an operator's, interrupted): the container is
    brought back to ``main`` or the agent marked as needing a rebuild.
    """
    finished = []
    for approval in hive.store.approvals(ApprovalStatus.RUNNING):
        log.warning("recovering approval #%s (%s %s), interrupted by a stop",
                    approval.id, approval.kind.value, approval.agent)
        if approval.kind == ApprovalKind.APPLY:
            finished.append(_recover_apply(hive, approval))
        else:
            finished.append(_recover_spawn(hive, approval))
    for name, (state, _note) in hive.store.rebuild_marks().items():
        if state == BUILDING and hive.store.has_agent(name):
            log.warning("re-running the rebuild of %r, interrupted by a stop", name)
            rebuild_agent(hive, hive.agent(name), rerun=True)
    return finished


def _recover_apply(hive: Hive, approval: Approval) -> Approval:
    agent = hive.agent(approval.agent)
    repo = Repo(agent.paths.applied)
    deploy = Deploy(approval_id=approval.id, agent=agent, sha=approval.sha or "",
                    prev_sha=approval.prev_sha or "")
    if repo.has_tag(deploy.deployed_tag):
        return _succeed(hive, approval, deploy)
    mark = hive.store.rebuild_mark(agent.name)
    # Marked building: the backend's build may have started (and may even have finished after
    # the daemon died), so the container is brought back to main.
    return _fail(hive, repo, approval, deploy, approval.note or INTERRUPTED,
                 reconverge=mark is not None and mark[0] == BUILDING)


def _recover_spawn(hive: Hive, approval: Approval) -> Approval:
    # A half-made container would otherwise linger unseen; a new agent's repos go too.
    agent = hive.agent(approval.agent)
    respawn = approval.prev_sha is not None
    resolved, out = _spawn_failed(hive, approval, agent, approval.note or SPAWN_INTERRUPTED,
                                  respawn=respawn)
    out.deliver()
    hive.checkpoint("spawn.failed-delivered", approval.agent)
    hive.call_each("agent_destroyed", hive=hive, agent=agent, purge=not respawn,
                   reason=f"its spawn failed: {resolved.note}")
    return resolved


# --- the operator's rebuild ------------------------------------------------------------------


def rebuild_agent(hive: Hive, agent: AgentSpec, *, rerun: bool = False,
                  reason: str | None = None) -> None:
    """Rebuild ``agent`` from its applied ``main`` outside any approval (the operator's rebuild,
    or startup re-running one a crash interrupted); the manager hears ``rebuilt`` once, and with
    a ``reason`` the agent gets its wake-up (:mod:`hivekit.wake`) when the rebuild succeeded.

    Success clears the agent's rebuild mark. A failure puts back the mark it had (an operator's
    rebuild that fails changes nothing) and raises; a re-run that fails marks it ``needed``.
    """
    mark_before = None if rerun else hive.store.rebuild_mark(agent.name)
    hive.store.set_rebuild(agent.name, BUILDING, "an operator's rebuild")
    hive.checkpoint("rebuild.marked", agent.name)
    try:
        hive.hook.rebuild(hive=hive, agent=agent, deploy=None)
    except Exception as exc:
        error = describe(exc)
        with outbox.record(hive) as out:
            if rerun:
                hive.store.set_rebuild(
                    agent.name, NEEDED,
                    f"an interrupted rebuild was re-run at startup and failed: {error}\n"
                    f"run `hivekit rebuild {agent.name}`")
            else:
                hive.store.set_rebuild(agent.name, *(mark_before or (None, None)))
            out.notify_manager(events.RebuiltHelper(agent=agent.name, ok=False, sha=None,
                                                    tag=None, note=error))
        out.deliver()
        if rerun:
            hive.refresh(agent)  # its badge: a startup re-run is no operation
            log.error("re-running the rebuild of %r failed: %s", agent.name, error)
            return
        raise
    hive.checkpoint("rebuild.built", agent.name)
    woken = None if reason is None else wake.message(hive, agent, reason)
    with outbox.record(hive) as out:
        hive.store.set_rebuild(agent.name, None)
        out.notify_manager(events.RebuiltHelper(
            agent=agent.name, ok=True, sha=Repo(agent.paths.applied).ref(MAIN), tag=None,
            note=None))
        if woken is not None:
            out.send(SYSTEM, agent.name, woken)
    hive.checkpoint("rebuild.done", agent.name)
    out.deliver()
    hive.checkpoint("rebuild.delivered", agent.name)


class Recovery:
    """The core's own startup work, registered as plugin ``core``."""

    @hookimpl(tryfirst=True)
    def startup(self, hive: Hive) -> None:
        from hivekit import teardown

        hive.ensure_dirs()
        outbox.drain(hive, before=lambda out: repair_tags(hive, out))
        teardown.recover(hive)
        recover(hive)
        teardown.sweep(hive)
