"""The meta flake plugin (``meta_flake``): every agent pinned in one git-audited Nix flake.

Enable it with ``[hive] enable = ["meta_flake"]`` on a Nix backend. It keeps
``<state_dir>/meta`` (see :mod:`.meta`) in step with the hive:

* **spawn** (a wrapper: before the backend creates the container): the new agent joins the
  flake, its input is locked, ``sync: add <n>`` is committed. A failure fails the spawn.
  After a successful build (spawn or rebuild), the hivekit pin it used is recorded.
* **destroy** (``trylast``, after the backend): the agent leaves the flake (``sync: remove
  <n>``). A failure is logged: the container is gone already.
* **prepare/finalize/abort_deploy**: the two-phase deploy of an approved apply.
* **rebuild** outside an approval (a wrapper, before the backend): relock that agent, commit if
  it moved.
* **agent_badges**: "needs update" for an agent built with an older hivekit than the flake pins.
* **startup**: agents without a record adopt the current pin; a sync; with ``[meta_flake]
  auto_update`` on, a thread checks (and rebuilds) at once and every ``update_interval``.
* **agent_flake_ref**: the meta repo, so a Nix backend builds ``<meta>#<n>``.
* ``hivekit meta log`` and ``hivekit meta update-hive`` (over ``/api/meta/...``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from hivekit import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    import click

    from hivekit import AgentSpec, Approval, Badge, Deploy, Hive

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
    meta = _meta(hive)
    # Reconcile with the agent set (an agent destroyed while the plugin was off, a crash between
    # writing flake.nix and committing it). Not fatal: spawns report the problem if it persists.
    # A sync may relock the hivekit input (its URL changed: the host's hivekit was upgraded),
    # so the agents built before adopt the pin they were built with first.
    try:
        meta.adopt()
        meta.sync()
    except Exception as exc:
        log.error("meta flake: startup sync failed: %s", exc)
    if hive.plugin_config("meta_flake").auto_update != "off":
        threading.Thread(target=auto_update, args=(hive,), name="meta-auto-update",
                         daemon=True).start()


def auto_update(hive: Hive) -> None:
    """``[meta_flake] auto_update``: check (and rebuild) now, then every ``update_interval``,
    until the hive stops. Failures are logged; the next round tries again."""
    from hivekit import Conflict, actions

    config = hive.plugin_config("meta_flake")
    meta = _meta(hive)
    while not hive.stopping.is_set():
        try:
            if config.auto_update == "rebuild":
                result = meta.update_hive(
                    lambda name, why: actions.rebuild(hive, name, why), "[meta_flake] auto_update")
                for row in result["agents"]:
                    if not row["ok"]:
                        log.warning("meta flake: auto_update could not rebuild %s: %s",
                                    row["name"], row["error"])
            elif meta.update_lock.acquire(blocking=False):
                try:
                    meta.check_hive()
                finally:
                    meta.update_lock.release()
        except Conflict:
            pass  # an operator's update-hive runs: it does the same
        except Exception as exc:
            log.warning("meta flake: auto_update failed (retried in %gs): %s",
                        config.update_interval, exc)
        else:
            log.info("meta flake: auto_update round done (hivekit at %s; next in %gs)",
                     (meta.current_hive() or "-")[:12], config.update_interval)
        if hive.stopping.wait(config.update_interval):
            return


@hookimpl(wrapper=True)
def spawn(hive: Hive, agent: AgentSpec) -> Any:
    meta = _meta(hive)
    meta.spawning(agent.name)
    meta.sync()
    pin = meta.building()
    result = yield
    meta.built(agent.name, pin)
    return result


@hookimpl(trylast=True)
def destroy(hive: Hive, agent: AgentSpec) -> None:
    meta = _meta(hive)
    meta.leaving(agent.name)
    meta.forget(agent.name)
    try:
        meta.sync()
    except Exception as exc:
        # The container is gone already; a stale input is bookkeeping the next sync fixes.
        log.warning("meta flake: sync after destroying %r failed: %s", agent.name, exc)
        hive.log(agent.name, f"meta: sync after destroy failed: {exc}", "stderr")


@hookimpl(wrapper=True)
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> Any:
    meta = _meta(hive)
    if deploy is None:  # inside a deploy, prepare_deploy has relocked already
        meta.rebuild(agent)
    pin = meta.building()
    result = yield
    meta.built(agent.name, pin)
    return result


@hookimpl
def agent_badges(hive: Hive, agent: AgentSpec) -> list[Badge]:
    from hivekit import Badge, BadgeLevel

    meta = _meta(hive)
    current = meta.current_hive()
    built = meta.built_with(agent.name)
    if current is None or built == current or not hive.has_agent(agent.name):
        return []
    auto = hive.plugin_config("meta_flake").auto_update
    return [Badge(
        "needs update", BadgeLevel.WARNING,
        f"built with hivekit {(built or 'unknown')[:12]}, the meta flake pins {current[:12]}: "
        "`hivekit meta update-hive` rebuilds every agent left behind"
        + (" (auto_update rebuilds it at its next round)" if auto == "rebuild" else ""))]


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
