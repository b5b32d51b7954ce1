"""The meta flake plugin (``meta_flake``): every agent pinned in one git-audited Nix flake.

Enable it with ``[hive] enable = ["meta_flake"]`` on a Nix backend. It keeps
``<state_dir>/meta`` (see :mod:`.meta`) in step with the hive:

* **spawn** (``tryfirst``, before the backend creates the container): the new agent joins the
  flake, its input is locked, ``sync: add <n>`` is committed. A failure fails the spawn.
* **destroy** (``trylast``, after the backend): the agent leaves the flake (``sync: remove
  <n>``). A failure is logged: the container is gone already.
* **prepare/finalize/abort_deploy**: the two-phase deploy of an approved apply.
* **rebuild** outside an approval (``tryfirst``): relock that agent, commit if it moved.
* **agent_flake_ref**: the meta repo, so a Nix backend builds ``<meta>#<n>``.
* ``hivekit meta log`` and ``hivekit meta update-hive`` (over ``/api/meta/...``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hivekit import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    import click

    from hivekit import AgentSpec, Approval, Deploy, Hive

log = logging.getLogger("hivekit.meta_flake")


def _meta(hive: Hive) -> Any:
    from .meta import meta_for

    return meta_for(hive)


@hookimpl
def config_schema() -> type:
    from .config import MetaFlakeConfig

    return MetaFlakeConfig


@hookimpl
def startup(hive: Hive) -> None:
    # Reconcile with the agent set (an agent destroyed while the plugin was off, a crash between
    # writing flake.nix and committing it). Not fatal: spawns report the problem if it persists.
    try:
        _meta(hive).sync()
    except Exception as exc:
        log.error("meta flake: startup sync failed: %s", exc)


@hookimpl(tryfirst=True)
def spawn(hive: Hive, agent: AgentSpec) -> None:
    meta = _meta(hive)
    meta.spawning(agent.name)
    meta.sync()


@hookimpl(trylast=True)
def destroy(hive: Hive, agent: AgentSpec) -> None:
    meta = _meta(hive)
    meta.leaving(agent.name)
    try:
        meta.sync()
    except Exception as exc:
        # The container is gone already; a stale input is bookkeeping the next sync fixes.
        log.warning("meta flake: sync after destroying %r failed: %s", agent.name, exc)
        hive.log(agent.name, f"meta: sync after destroy failed: {exc}", "stderr")


@hookimpl(tryfirst=True)
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    if deploy is None:  # inside a deploy, prepare_deploy has relocked already
        _meta(hive).rebuild(agent)


@hookimpl
def prepare_deploy(hive: Hive, deploy: Deploy) -> None:
    _meta(hive).prepare(deploy)


@hookimpl
def finalize_deploy(hive: Hive, deploy: Deploy) -> None:
    _meta(hive).finalize(deploy)


@hookimpl
def abort_deploy(hive: Hive, deploy: Deploy) -> None:
    _meta(hive).abort(deploy)


@hookimpl
def approval_resolved(hive: Hive, approval: Approval) -> None:
    from hivekit import ApprovalKind, ApprovalStatus

    if approval.kind == ApprovalKind.SPAWN and approval.status == ApprovalStatus.FAILED:
        meta = _meta(hive)
        meta.spawn_failed(approval.agent)
        meta.sync()


@hookimpl
def agent_flake_ref(hive: Hive) -> str:
    return str(hive.paths.meta)


@hookimpl
def register_routes(hive: Hive, register: Callable[[Any], None]) -> None:
    from .api import ROUTES

    for route in ROUTES:
        register(route)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import meta

    cli.add_command(meta)
