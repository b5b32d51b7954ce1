"""Every hook hivekit calls: the plugin author's manual.

A plugin is a module (or an object) with functions marked ``@hookimpl`` whose names are the hook
names below; it is found through the ``hivekit`` entry-point group and enabled by the operator's
config (``[hive] enable = ["myplugin"]``). Implement only the hooks you need, and only take the
arguments you use: pluggy passes arguments by name. A function marked ``@hookimpl`` whose name is
not a hook below is an error at start naming your plugin (a misspelling is never silently ignored).

Conventions:

* ``hive`` is the running :class:`hivekit.hive.Hive`: config, paths, store, bus, and helpers
  such as ``hive.log(agent, line)`` (a line on the dashboard's live log) and
  ``hive.plugin_config(name)``.
* ``agent`` is an :class:`hivekit.records.AgentSpec`: name, port, manager or not, and its paths.
* Hooks are called synchronously, from worker threads, never from the event loop: block freely,
  but do not assume which thread.
* A hook that raises :class:`hivekit.errors.HiveError` has its message shown to the operator as
  is; any other exception is shown as ``<ExceptionType>: <message>`` and logged with its
  traceback. Observer hooks (noted below) have their exceptions logged and ignored instead, and
  are called plugin by plugin, so they take no ``wrapper=True`` implementations.

Exactly one enabled plugin is the **backend**: it implements ``spawn``, ``start``, ``stop``,
``rebuild``, ``destroy`` and ``is_running`` and runs the containers. Implementing
``is_running`` is what makes a plugin a backend, so no other plugin implements it. Other
plugins order themselves around the backend in the same hooks: ``tryfirst=True`` to veto or
prepare before it (raise to refuse), ``trylast=True`` to act after it, or ``wrapper=True`` to
surround it (``result = yield``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hivekit import hookspec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import click

    from hivekit.hive import Hive
    from hivekit.records import AgentSpec, AgentView, Approval, Badge, Deploy, ExecPlan

# ------------------------------------------------------------------------------------------------
# Setup
# ------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def config_schema() -> type | None:
    """The attrs class of this plugin's config table (the table is named after the plugin).

    Called once per plugin while the config is loaded, before anything else runs; the plugin's
    table (``[myplugin]``) is structured into this class with extra keys forbidden, and the
    instance is available as ``hive.plugin_config("myplugin")``. Give every attribute a default so
    that a config without the table works. Return None (or don't implement it) for no table.

    Validation errors raised by the class (``attrs`` validators, ``ValueError`` in
    ``__attrs_post_init__``) become config errors naming the file, table and key.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``hivekit`` CLI.

    Called once when the CLI starts, once per enabled plugin (the core calls each plugin's
    implementation on its own, so that it knows which plugin owns which command). Keep
    module-level imports light: every CLI invocation pays for them. A command name already taken
    by another plugin is an error naming both plugins.

    :param cli: the root ``hivekit`` group; ``cli.command()`` / ``cli.group()`` add to it.
    """


@hookspec
def register_routes(hive: Hive, register: Callable[[Any], None]) -> None:
    """Add Litestar route handlers or routers to the HTTP API.

    Called once when the API app is built (for the admin socket and for every other server that
    reuses the app). ``register(handler_or_router)`` adds one. Handlers should stay thin: do the
    work in plain functions that take ``hive``. A path that collides with another route is an
    error at start.
    """


@hookspec
def startup(hive: Hive) -> None:
    """The daemon has opened the store and loaded every plugin; it serves no request yet.

    Reconcile here: finish interrupted work, start sweeps or background threads (daemon threads,
    or stop them in :func:`shutdown`). Called in plugin order; the core's own recovery of
    interrupted deploys runs first (``tryfirst``), so a plugin sees no ``running`` approval.
    An exception aborts the start with the plugin named, and the daemon exits 1.
    """


@hookspec
def shutdown(hive: Hive) -> None:
    """The daemon is stopping (SIGINT/SIGTERM) after the servers closed. Stop threads, children.

    Exceptions are logged and ignored: every plugin gets its call.
    """


# ------------------------------------------------------------------------------------------------
# Lifecycle: the backend implements these; other plugins order themselves around it
# ------------------------------------------------------------------------------------------------


@hookspec
def spawn(hive: Hive, agent: AgentSpec) -> None:
    """Create the agent's container from its applied repo and start it.

    Runs under the agent's lock, after the proposed and applied repos were seeded, for an approved
    spawn (and for the manager's first start). Raising fails the spawn: the approval becomes
    ``failed`` with the message as its note and nothing is registered. A ``tryfirst`` plugin
    raising vetoes the spawn before the backend runs (the port check does).
    """


@hookspec
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    """Build the agent's container from its applied repo's ``main`` and (re)start it.

    :param deploy: the approval's deploy when this runs inside one (the applied ``main`` already
        moved and ``prepare_deploy`` already ran); None for an operator's plain rebuild.

    Raising fails the build: inside a deploy, the approval becomes ``failed`` with the message in
    its ``failed/<id>`` tag, ``main`` goes back and ``abort_deploy`` runs; outside one, the
    operator sees the message. Stream long output with ``hive.log(agent.name, line)``.
    """


@hookspec
def start(hive: Hive, agent: AgentSpec) -> None:
    """Start the agent's existing container. Raising fails the start with that message."""


@hookspec
def stop(hive: Hive, agent: AgentSpec) -> None:
    """Stop the agent's container. Stopping a stopped agent is not an error."""


@hookspec
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> None:
    """Remove the agent's container. Destroying a missing container is not an error.

    The core removes the runtime dir and, with ``purge``, the agent's repos, notes and creds after
    this returns; plugins with state of their own about the agent remove it here. Also called
    when a tombstone is purged (its container is gone already).
    """


@hookspec(firstresult=True)
def is_running(hive: Hive, agent: AgentSpec) -> bool | None:
    """Whether the agent's container runs. Stops at first non-None result (the backend's)."""


@hookspec(firstresult=True)
def agent_flake_ref(hive: Hive, agent: AgentSpec) -> str | None:
    """The flake reference a Nix-based backend builds the agent from (``<ref>#<name>``'s ref).

    Stops at first non-None result: the meta flake plugin answers with its meta repo when
    enabled; otherwise the backend falls back to its own configured per-agent ref.
    """


@hookspec
def initial_config_files(hive: Hive, agent: AgentSpec,
                         template: str | None) -> dict[str, str] | None:
    """Files to seed a new agent's proposed repo with: ``{relative path: content}``.

    Called once per new agent (not for a tombstone re-spawned with its history, nor for an
    agent whose proposed repo already exists). Every plugin's files are merged; a path given by
    two plugins is an error naming both, and the spawn fails before anything is written.

    :param template: the template the spawn asked for (one some plugin's
        :func:`agent_templates` offers), or None for the default seed. A plugin seeds for the
        templates it knows and its default otherwise.
    """


@hookspec
def agent_templates(hive: Hive) -> dict[str, str] | None:
    """The templates this plugin can seed a new agent's config with: ``{name: what it is}``.

    A spawn request may name one (``hivekit request spawn NAME --template claude``, the
    manager's ``request_spawn``); a name no plugin offers is refused at request time, listing
    the ones offered. The chosen name reaches :func:`initial_config_files` as ``template``.
    A name offered by two plugins is an error naming the second. Called on every spawn
    request: keep it cheap.
    """


# ------------------------------------------------------------------------------------------------
# Operating agents: the backend's tools for the operator (``hivekit exec``, ``hivekit logs``)
# ------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def agent_exec(hive: Hive, agent: AgentSpec, argv: list[str], tty: bool) -> ExecPlan | None:
    """How to run ``argv`` inside the agent's sandbox or container, with its creds dir there.

    For ``hivekit exec NAME -- CMD...`` (``POST /api/agents/{name}/exec``): an interactive
    login (``claude login``) or a look around as the agent sees things. The daemon only plans:
    return a :class:`hivekit.records.ExecPlan` (the host command line, its whole environment
    and working directory), which the CLI runs itself on the hive's host, as its own child, so
    an interactive command gets the operator's terminal. Put no secret in the plan (it is
    returned over the API): point the command at the agent's creds instead. Called in any
    state of the agent (a backend whose command needs a running container says so when it
    runs). Raising refuses the command with that message. Stops at first non-None result (the
    backend's); None from every plugin means this backend cannot do it.

    :param argv: the command and its arguments, as given (checked: non-empty strings).
    :param tty: whether the caller has a terminal (an interactive command needs one).
    :returns: the plan, or None.
    """


@hookspec(firstresult=True)
def agent_logs(hive: Hive, agent: AgentSpec, lines: int,
               follow: bool) -> Iterable[str | None] | None:
    """The agent's own output, for ``hivekit logs NAME [-n N] [-f]``.

    Return an iterable of lines (no line ends): the last ``lines`` lines the agent wrote, and
    with ``follow`` then each new line as it comes, until the reader stops. A follower yields
    None at least every few seconds while nothing comes (the reader checks then whether to
    stop, and calls ``close()`` on it: a generator releases what it holds in ``finally``). It
    is iterated on a worker thread. Raising refuses the request with that message. Stops at
    first non-None result (the backend's). When no plugin answers, the core serves the lines
    the live log kept for the agent (:meth:`hivekit.hive.Hive.log`) and follows the live log.

    :param lines: how many recent lines to start with (0: none, only new ones).
    :param follow: keep going with new lines.
    :returns: the lines, or None.
    """


# ------------------------------------------------------------------------------------------------
# Deploy phases (an approved apply, or a spawn): see DESIGN.md "the git-audited deploy"
# ------------------------------------------------------------------------------------------------


@hookspec
def deploy_step(hive: Hive, deploy: Deploy, step: str) -> None:
    """A deploy reached ``step``; announced before the step's work starts.

    Steps in order: ``tagged`` (``approved/<id>`` and ``building/<id>`` planted), ``main-moved``
    (``main`` and the working tree at the proposal), ``prepare`` (``prepare_deploy`` about to run),
    ``build`` (the backend's rebuild about to run), ``deployed`` (``deployed/<id>`` planted,
    status not yet written), ``finalized``. Exceptions are logged and ignored: an observer never
    breaks a deploy. (A test plugin may end the process here to test crash recovery.)
    """


@hookspec
def prepare_deploy(hive: Hive, deploy: Deploy) -> None:
    """Get ready to build ``deploy``: ``main`` already points at the proposal.

    Must be undoable by :func:`abort_deploy`. Raising fails the deploy (``abort_deploy`` runs for
    every plugin, ``main`` goes back).
    """


@hookspec
def finalize_deploy(hive: Hive, deploy: Deploy) -> None:
    """The build succeeded and ``deployed/<id>`` is tagged: make it permanent.

    Must be idempotent: after a crash, startup recovery calls it again for a deploy whose
    ``deployed/<id>`` exists. Exceptions are logged and ignored: the build did succeed.
    """


@hookspec
def abort_deploy(hive: Hive, deploy: Deploy, reason: str) -> None:
    """The deploy failed (or was interrupted) after ``prepare_deploy`` may have run: undo it.

    Called on every failure path, also when ``prepare_deploy`` itself failed, and by startup
    recovery for an interrupted deploy, so it must cope with a prepare that never happened.
    Only undo this deploy's own changes: other agents' deploys may be in flight. Exceptions are
    logged and ignored.
    """


# ------------------------------------------------------------------------------------------------
# Approvals
# ------------------------------------------------------------------------------------------------


@hookspec
def approval_resolved(hive: Hive, approval: Approval) -> None:
    """An approval reached a terminal state (approved, denied or failed). Observers only.

    Called after the store, the tags and the manager's helper events are written. Exceptions are
    logged and ignored.
    """


# ------------------------------------------------------------------------------------------------
# What the operator sees
# ------------------------------------------------------------------------------------------------


@hookspec
def agent_badges(hive: Hive, agent: AgentSpec) -> list[Badge | str] | None:
    """Short labels shown next to the agent ("needs login", "needs update").

    Return :class:`hivekit.records.Badge` objects (a label, a level — ``info``, ``warning`` or
    ``error`` — and a detail saying what it means and how to fix it); a plain string is a badge
    of level ``info``. Keep it cheap: it runs whenever an agent's row is made. Exceptions are
    logged and that plugin's badges skipped.
    """


@hookspec
def state_extras(hive: Hive, agents: list[AgentView]) -> dict[str, Any] | None:
    """Extra top-level keys for ``GET /api/state`` (e.g. ``port_conflicts``), JSON-ready.

    A key the core already uses, or one given by two plugins, is an error naming the plugin.
    """
