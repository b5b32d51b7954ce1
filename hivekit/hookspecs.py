"""Every hook hivekit calls: the plugin author's manual.

A plugin is a module (or an object) with functions marked ``@hookimpl`` whose names are the hook
names below; it is found through the ``hivekit`` entry-point group and enabled by the operator's
config (``[hive] enable = ["myplugin"]``). Implement only the hooks you need, and only take the
arguments you use: pluggy passes arguments by name. A function marked ``@hookimpl`` whose name is
not a hook below is an error at start naming your plugin (a misspelling is never silently ignored).
``docs/plugin-hooks.md`` has the same reference with an example per hook, and
``docs/write-a-backend.md`` builds a backend step by step.

Conventions:

* ``hive`` is the running :class:`hivekit.hive.Hive`: config, paths, the event bus, and helpers
  such as ``hive.log(agent, line)`` (a line on the dashboard's live log),
  ``hive.plugin_config(name)``, ``hive.plugin_state(name, factory)``, ``hive.agent_env(agent)``
  and ``hive.stopping``. What a plugin may use is listed in ``hivekit.__all__`` (import it
  ``from hivekit import ...``) and in :class:`hivekit.hive.Hive`'s docstring.
* ``agent`` is an :class:`hivekit.records.AgentSpec`: name, port, manager or not, and its paths.
* Hooks are called synchronously, from worker threads, never from the event loop: block freely,
  but do not assume which thread.
* A hook that raises :class:`hivekit.errors.HiveError` has its message shown to the operator as
  is; any other exception is shown as ``<ExceptionType>: <message>`` and logged with its
  traceback. Observer hooks (noted below) have their exceptions logged and ignored instead.
* Hooks in :data:`PER_PLUGIN` are called plugin by plugin (each plugin's result or failure is
  its own), so they take no ``wrapper=True`` implementations (refused at start).

Exactly one enabled plugin is the **backend**: it implements ``spawn``, ``start``, ``stop``,
``rebuild``, ``destroy`` and ``is_running`` (and may implement ``restart``) and runs the
containers. Implementing ``is_running`` is what makes a plugin a backend, so no other plugin
implements it. Other plugins order themselves around the backend in the same hooks:
``tryfirst=True`` to prepare before it, ``trylast=True`` to act after it, or ``wrapper=True``
to surround it (``result = yield``). To refuse a spawn or an apply, use :func:`check_request`:
it runs before anything exists.

**The lifecycle contract** (what a backend may assume and must tolerate; the conformance suite,
:mod:`hivekit.testing.conformance`, checks it against a real daemon):

* The core calls at most one lifecycle hook per agent at a time (it holds the agent's lock);
  different agents' hooks run concurrently, on different threads.
* ``spawn``: the agent is new (or a tombstone re-spawned); its applied repo exists at ``main``
  and its notes, creds and runtime dirs exist. Build from the applied repo's ``main`` and
  start. If it raises, the core calls ``destroy`` right away (``purge=True`` for a new agent,
  whose repos the core then removes; ``purge=False`` for a re-spawned tombstone, which stays a
  tombstone), so remove whatever you half-made and tolerate being told to destroy nothing.
* ``rebuild``: build from ``main`` again and run it, whether the agent was running or stopped.
  If the build fails, raise: the previous build must keep running as it was.
* ``start`` runs what was last built. It is called on agents that already run (make it a
  no-op then), after a daemon restart, and by ``restart``.
* ``stop`` may be called on a stopped agent, or one whose container is gone: not an error.
* ``restart``: optional. Without it (or when it returns None) the core calls ``stop`` then
  ``start``.
* ``destroy`` comes without a ``stop`` first: stop and remove. The container may be running,
  stopped, half-made or gone; the hook is also called when a tombstone is purged (nothing
  left), after a failed spawn, and for a spawn a crash interrupted.
* ``is_running`` is asked seldom (see "the status channel" below: never per snapshot), from
  any thread: answer from what you know, cheaply; False for an agent you never heard of; False
  once the agent died on its own.
* A daemon restart calls no ``spawn``, and ``rebuild`` (with ``deploy=None``) only to bring back
  to ``main`` a container whose build a crash interrupted (see "After a crash" below):
  ``startup`` runs, then every agent the operator last wanted running whose row does not say
  ``running`` gets a ``start``; agents the operator stopped get nothing. Whether agents keep
  running while no daemon runs is the backend's choice (containers do; the process backend's
  children stop in ``shutdown``).
* ``health_check`` (optional, any plugin may add one): after each build, the deploy's
  ``verify`` step asks until the agent is healthy or ``health_timeout`` passes; a backend checks
  that what it built stays up (and runs the probe the agent's config declares). Reporting
  ``failing`` on the status channel after a build fails the verification too.
* Long work (a build, waiting for a port) checks ``hive.stopping`` and gives up when it is set:
  the daemon is stopping and waits for no one.
* The agent's identity environment comes from ``hive.agent_env(agent, mounts=...)``; the
  agent's own config must not be able to change it.
* Output worth showing the operator goes to ``hive.log(agent, line)``.

**The status channel.** The core keeps every agent's row (status, deployed sha, transient,
badges, the backend's detail, exit code and last output lines) in memory, so that showing the
hive never calls a plugin per agent (a hive has up to 900). A backend tells it what it learns,
whenever it learns it, from any thread::

    hive.report_status(agent, status, *, detail=None, exit_code=None, output=None)

``agent`` is an :class:`~hivekit.records.AgentSpec` or a name; ``status`` is ``running``,
``stopped`` or ``failing`` (wanted up but not staying up: crash-looping, its unit failed);
``detail`` is a few words shown beside it ("crashed, restarting (restart 4)"); ``exit_code``
and ``output`` (its last lines) say why it ended. Each report replaces the previous one; an
unchanged report costs nothing (no event). A backend that knows when a child dies reports it at
once (the ``process`` backend's supervisor does); one that must ask reports from one poll of
all its agents on a timer (``nixos_container``: one ``systemctl list-units``), never one call
per agent. When a lifecycle operation on an agent begins, what the core knew of its status is
forgotten; when it ends, the row takes what the backend reported meanwhile, or, if it reported
nothing, ``is_running``'s answer (asked once). So a backend that reports what its own
``spawn``/``start``/``stop``/``rebuild`` left behind is never asked ``is_running`` at all.
A report that a running agent is ``failing`` or ``stopped``, outside any operation, is a crash:
the core tells the :func:`agent_crashed` observers (a backend fires no observer itself).
Every change to a row reaches clients as one ``agent_changed`` event carrying the whole row.

A plugin whose badges for an agent changed outside any operation calls
``hive.refresh(agent)`` (see :func:`agent_badges`).

**After a crash** (the daemon killed at any instant; README "How a deploy works"), the next start
finishes what was under way, so some hooks are called again for the same thing and must be
idempotent: ``finalize_deploy`` (a deploy whose ``deployed/<id>`` exists), ``abort_deploy`` (an
interrupted deploy, whether or not ``prepare_deploy`` ran), ``destroy`` (a destroy or purge
under way, or an interrupted spawn's cleanup), ``rebuild`` with ``deploy=None`` (an interrupted
deploy's container brought back to ``main``, or an interrupted rebuild run again), and the
observers ``approval_resolved`` (with the same ``outbox_id``), ``agent_destroyed`` and
``checkpoint``. ``spawn`` and ``prepare_deploy`` are never repeated for the same approval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hivekit import hookspec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import click

    from hivekit.hive import Hive
    from hivekit.records import (
        AgentSpec,
        AgentView,
        Approval,
        Badge,
        Deploy,
        ExecPlan,
        Mount,
        Request,
    )

#: Hooks the core calls one plugin at a time (:meth:`hivekit.hive.Hive.each`): each plugin's
#: result is its own, and one plugin's failure does not keep the others from their call.
#: Wrapper implementations of them are refused when the plugin is registered.
PER_PLUGIN = frozenset({
    "register_commands", "register_routes", "shutdown", "initial_config_files", "deploy_step",
    "finalize_deploy", "abort_deploy", "approval_requested", "approval_resolved",
    "agent_started", "agent_stopped", "agent_crashed", "agent_destroyed", "agent_badges",
    "state_extras", "checkpoint", "health_check", "agent_templates",
})

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

    The table is structured strictly (:mod:`hivekit.convert`): a value of the wrong type is
    refused, never coerced (``"false"`` is no boolean, ``"8100"`` no integer). Validation errors
    raised by the class (``attrs`` validators, ``ValueError`` in ``__attrs_post_init__``) become
    config errors naming the file, table and key, and the daemon does not start; every
    validator is run, so every bad key is reported at once (start a validator's message with
    the key's name, or leave the name out). The core asks each plugin's own implementation
    only. Stops at first non-None result.

    :returns: the class, or None.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``hivekit`` CLI.

    Called once when the CLI starts, once per enabled plugin (plugin by plugin, so that the core
    knows which plugin owns which command); no daemon needs to run. Keep module-level imports
    light: every CLI invocation pays for them. A command name already taken by the core or by
    another plugin is an error naming both plugins. A command reaches the daemon with
    ``hivekit.api_command`` (or ``ctx.obj.client()``). Raising ends the CLI with a traceback:
    don't.

    :param cli: the root ``hivekit`` group; ``cli.command()`` / ``cli.group()`` add to it.
    """


@hookspec
def register_routes(hive: Hive, register: Callable[[Any], None]) -> None:
    """Add Litestar route handlers, controllers or routers to the HTTP API.

    Called plugin by plugin when the API app is built: at the daemon's start, before
    ``startup`` (and again by every server that reuses the app, such as the dashboard).
    Handlers should stay thin: do the work in plain functions that take ``hive`` (the app's
    ``hive`` dependency: ``hive: HiveDep``). A method and path that another plugin or the core
    already serves is an error at start naming both; raising fails the start too.

    Declare what a route takes and read it already checked: a JSON body class as
    ``opt={"body": Cls}`` (read it with ``hivekit.body(request)``), query parameters as
    ``opt={"query": Cls}`` (``hivekit.query(request)``), ids as path parameters named ``*_id``
    (``hivekit.path_id(request, "x_id")``). Every request is structured by these before the
    handler runs and refused with a 400 naming the field otherwise; a route that declares no
    body takes none, one that declares no query takes no parameters.

    :param hive: the running hive.
    :param register: ``register(handler_or_router)`` adds one to the app.
    """


@hookspec
def startup(hive: Hive) -> None:
    """The daemon has opened the store and loaded every plugin; it serves no request yet.

    Reconcile here: finish interrupted work, start sweeps or background threads (daemon threads,
    or stop them in :func:`shutdown`). Called in plugin order; the core's own recovery of
    interrupted deploys runs first (``tryfirst``), so a plugin sees no ``running`` approval.
    The core's bringing up of the agents the operator wants running runs last (``trylast``,
    in the background). An exception aborts the start with the plugin named, and the daemon
    exits 1.

    :param hive: the running hive.
    """


@hookspec
def shutdown(hive: Hive) -> None:
    """The daemon is stopping (SIGINT/SIGTERM) after the servers closed. Stop threads, children.

    ``hive.stopping`` is already set. No lifecycle hook is called for the agents: a backend
    whose agents cannot outlive the daemon stops them here. Called plugin by plugin;
    exceptions are logged and ignored: every plugin gets its call.

    :param hive: the running hive.
    """


# ------------------------------------------------------------------------------------------------
# Requests and approvals
# ------------------------------------------------------------------------------------------------


@hookspec
def check_request(hive: Hive, request: Request) -> None:
    """Refuse a spawn or an apply before anything is made for it: raise to refuse.

    Called for every request, whoever makes it (the manager's socket, the admin API, the
    dashboard), once the core has checked it (a valid, free name; a commit that exists in the
    proposed repo) and before any approval, tag, repo or folder exists. A refusal leaves
    nothing behind: the requester gets the message, the operator never sees the request.
    Raise :class:`hivekit.errors.Conflict` (the hive's state forbids it),
    :class:`~hivekit.errors.Forbidden` (policy) or :class:`~hivekit.errors.BadRequest`; any
    other exception refuses it too, logged as a plugin failure. The port check refuses here a
    spawn whose port a running agent holds; a deny-list refuses names or commits. What is
    allowed now may still fail later (an approval is decided later): lifecycle hooks check
    again what can change meanwhile.

    :param hive: the running hive.
    :param request: what is asked: ``kind`` (``spawn`` or ``apply``), the ``agent`` (for a
        spawn, the spec of an agent that does not exist yet), and for an apply the ``commit``
        asked for and the full ``sha`` it names in the proposed repo (read it there with git;
        it is not fetched into the applied repo until the request passes).
    """


@hookspec
def approval_requested(hive: Hive, approval: Approval) -> None:
    """A request passed every check and waits for the operator. Observers only (notifiers).

    Called plugin by plugin after the approval is stored and announced to the dashboard, on the
    thread that made the request; the operator may already be deciding it. Exceptions are
    logged and ignored.

    :param hive: the running hive.
    :param approval: the new approval, ``pending``: its ``id``, ``kind``, ``agent``, and for an
        apply the ``sha`` to deploy.
    """


@hookspec
def approval_resolved(hive: Hive, approval: Approval, outbox_id: int) -> None:
    """An approval reached a terminal state (approved, denied or failed). Observers only.

    Called plugin by plugin after the store, the tags and the manager's helper events are
    written: the terminal status and every message it owes are written in one transaction with
    an outbox entry for this call, and the entry is marked delivered after it. **Called at least
    once**: when the daemon dies between this call and that mark, the next start calls it again
    (for the same approval, with the same ``outbox_id``), possibly before your ``startup`` hook
    runs. A plugin that must act exactly once keeps the ``outbox_id`` values it handled.
    Exceptions are logged and ignored.

    :param hive: the running hive.
    :param approval: the approval as the store holds it now (its ``status``, ``tag``, ``note``).
    :param outbox_id: the outbox entry's id: the same for every call about this outcome, never
        reused for another.
    """


# ------------------------------------------------------------------------------------------------
# Lifecycle: the backend implements these; other plugins order themselves around it
# ------------------------------------------------------------------------------------------------


@hookspec
def spawn(hive: Hive, agent: AgentSpec) -> None:
    """Create the agent's container from its applied repo's ``main`` and start it.

    Runs under the agent's lock, after the proposed and applied repos were seeded, for an approved
    spawn (and for the manager's first start). Raising fails the spawn: the approval becomes
    ``failed`` with the message as its note, nothing is registered, and ``destroy`` is called at
    once so that the backend removes what it half-made (see the lifecycle contract above).

    :param hive: the running hive.
    :param agent: the agent it is about.
    """


@hookspec
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    """Build the agent's container from its applied repo's ``main`` and (re)start it.

    Called on a running or a stopped agent, under its lock. Raising fails the build: inside a
    deploy, the approval becomes ``failed`` with the message in its ``failed/<id>`` tag,
    ``main`` goes back and ``abort_deploy`` runs; outside one, the operator sees the message.
    Either way the previous build must still run as it did. Stream long output with
    ``hive.log(agent, line)``.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :param deploy: the approval's deploy when this runs inside one (the applied ``main`` already
        moved and ``prepare_deploy`` already ran); None for an operator's plain rebuild.
    """


@hookspec
def start(hive: Hive, agent: AgentSpec) -> None:
    """Start the agent's existing container: run what was last built.

    Called by the operator's start, after a daemon restart for every agent wanted running that
    does not run, and by the default restart. The agent may already run: then do nothing.
    Raising fails the start with that message.

    :param hive: the running hive.
    :param agent: the agent it is about.
    """


@hookspec
def stop(hive: Hive, agent: AgentSpec) -> None:
    """Stop the agent's container. Stopping a stopped or missing agent is not an error.

    Raising fails the stop with that message (the agent's wanted state stays as it was).

    :param hive: the running hive.
    :param agent: the agent it is about.
    """


@hookspec(firstresult=True)
def restart(hive: Hive, agent: AgentSpec) -> bool | None:
    """Restart the agent in one go, if the backend can do better than stop + start.

    Optional. Return True when done; return None (or don't implement it) and the core calls
    ``stop`` then ``start`` instead, every plugin's. When a backend restarts in one go the other
    plugins' ``stop`` and ``start`` are not called: a plugin that must act whenever an agent
    comes up listens to :func:`agent_started`. Raising fails the restart with that message.
    Stops at first non-None result.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :returns: True if the agent was restarted, else None.
    """


@hookspec
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> None:
    """Stop and remove the agent's container. Destroying a missing container is not an error.

    No ``stop`` comes first. The core removes the runtime dir and, with ``purge``, the agent's
    repos, notes and creds after this returns; plugins with state of their own about the agent
    remove it here. Also called when a tombstone is purged (its container is gone already),
    right after a failed spawn, and at startup for a spawn a crash interrupted. Raising fails
    the destroy: the agent stays as it was.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :param purge: the agent's kept state goes too (a purge, or a failed spawn of a new agent).
    """


@hookspec(firstresult=True)
def is_running(hive: Hive, agent: AgentSpec) -> bool | None:
    """Whether the agent's container runs. Stops at first non-None result (the backend's).

    Asked seldom, from any thread: only when the core knows nothing newer — when the hive
    starts, for an agent the backend did not report on during its own ``startup``, and when a
    lifecycle operation ends without a report since it began (see "the status channel" above).
    Never per snapshot. Keep it thread-safe. False for an agent the backend never heard of, and
    as soon as a running agent died on its own. Implementing it is what makes a plugin the
    backend. Raising counts as not running (and is logged).

    :param hive: the running hive.
    :param agent: the agent it is about.
    :returns: True or False.
    """


@hookspec(firstresult=True)
def agent_mounts(hive: Hive, agent: AgentSpec) -> list[Mount] | None:
    """The agent's mount table: which host directories its sandbox or container shows, where.

    Asked whenever hivekit writes a path for the agent to read: its identity environment
    (``HIVE_NOTES``...), the notes path in its wake-ups, and, for the manager, the ``applied``
    remote of every proposed repo (``hive.inside(agent, path)`` translates with it: the entry
    with the longest matching host path wins). Answer from the agent's configuration alone, the
    same before its container exists as while it runs; keep it cheap. Return None when the
    agent sees the host's own filesystem (a plain process). Stops at first non-None result (the
    backend's). Raising fails whatever asked (a spawn, a rebuild, a start); at startup the
    failure is logged and the agent's remotes are left as they were.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :returns: a list of :class:`hivekit.records.Mount` (host path, path inside, read-only), or
        None for the host's view.
    """


@hookspec(firstresult=True)
def agent_flake_ref(hive: Hive, agent: AgentSpec) -> str | None:
    """The flake reference a Nix-based backend builds the agent from (``<ref>#<name>``'s ref).

    Asked by the backend (``hive.hook.agent_flake_ref``) before each build. Stops at first
    non-None result: the meta flake plugin answers with its meta repo when enabled; otherwise
    the backend falls back to its own configured per-agent ref. Raising fails that build.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :returns: the flake reference, or None.
    """


@hookspec
def initial_config_files(hive: Hive, agent: AgentSpec,
                         template: str | None) -> dict[str, str] | None:
    """Files to seed a new agent's proposed repo with: ``{relative path: content}``.

    Called once per new agent, plugin by plugin, before its repos exist (not for a tombstone
    re-spawned with its history, nor for an agent whose proposed repo already exists). Every
    plugin's files are merged; a path given by two plugins, or one outside the repo, is an
    error naming the plugin, and the spawn fails before anything is written. Raising fails the
    spawn likewise.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :param template: the template the spawn asked for (one some plugin's
        :func:`agent_templates` offers), or None for the default seed. A plugin seeds for the
        templates it knows and its default otherwise.
    :returns: the files, or None for none.
    """


@hookspec
def agent_templates(hive: Hive) -> dict[str, str] | None:
    """The templates this plugin can seed a new agent's config with: ``{name: what it is}``.

    Called plugin by plugin on every spawn request (keep it cheap) and by ``GET
    /api/templates``. A spawn request may name one (``hivekit request spawn NAME --template
    claude``, the manager's ``request_spawn``); a name no plugin offers is refused at request
    time, listing the ones offered. The chosen name reaches :func:`initial_config_files` as
    ``template``. A name offered by two plugins is an error naming the second. Raising fails
    the request with that message.

    :param hive: the running hive.
    :returns: the templates, or None for none.
    """


# ------------------------------------------------------------------------------------------------
# Operating agents: the backend's tools for the operator (``hivekit exec``, ``hivekit logs``)
# ------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def agent_exec(hive: Hive, agent: AgentSpec, argv: list[str], tty: bool) -> ExecPlan | None:
    """How to run ``argv`` inside the agent's sandbox or container, with its creds dir there.

    For ``hivekit exec NAME -- CMD...`` (``POST /api/agents/{name}/exec``): an interactive
    login (``claude login``) or a look around as the agent sees things. The daemon only plans:
    return a :class:`hivekit.ExecPlan` (the host command line, its whole environment and
    working directory), which the CLI runs itself on the hive's host, as its own process, so
    an interactive command gets the operator's terminal. Put no secret in the plan (it is
    returned over the API): point the command at the agent's creds instead. Called for a
    registered agent in any state (a backend whose command needs a running container says so
    when it runs). Raising refuses the command with that message. Stops at first non-None
    result (the backend's); None from every plugin means this backend cannot do it.

    :param hive: the running hive.
    :param agent: the agent to run the command in.
    :param argv: the command and its arguments, as given (checked: non-empty strings).
    :param tty: whether the caller has a terminal (an interactive command needs one).
    :returns: the plan, or None.
    """


@hookspec(firstresult=True)
def agent_logs(hive: Hive, agent: AgentSpec, lines: int,
               follow: bool) -> Iterable[str | None] | None:
    """The agent's own output, for ``hivekit logs NAME [-n N] [-f]``.

    Called for a registered agent, on a worker thread, which also iterates the result. Return
    an iterable of lines (no line ends): the last ``lines`` lines the agent wrote, and with
    ``follow`` then each new line as it comes, until the reader stops. A follower yields None
    at least every few seconds while nothing comes (the reader checks then whether to stop,
    and calls ``close()`` on it: a generator releases what it holds in ``finally``). Raising
    refuses the request with that message. Stops at first non-None result (the backend's).
    When no plugin answers, the core serves the lines the live log kept for the agent
    (:meth:`hivekit.hive.Hive.log`) and follows the live log.

    :param hive: the running hive.
    :param agent: the agent whose output is wanted.
    :param lines: how many recent lines to start with (0: none, only new ones).
    :param follow: keep going with new lines.
    :returns: the lines, or None.
    """


# ------------------------------------------------------------------------------------------------
# Lifecycle observers: told after the fact, whatever the backend
# ------------------------------------------------------------------------------------------------


@hookspec
def agent_started(hive: Hive, agent: AgentSpec, reason: str) -> None:
    """The agent came up: spawned, started, restarted, rebuilt, deployed, or brought back.

    Called plugin by plugin after the operation succeeded and the agent's lock was released,
    on the thread that did it. Exceptions are logged and ignored.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :param reason: what brought it up, in the operator's words: ``"spawned"``, ``"started by
        the operator"``, ``"restarted by the operator"``, ``"rebuilt by the operator"``,
        ``"deployed approval #7"``, ``"the hive started"``.
    """


@hookspec
def agent_stopped(hive: Hive, agent: AgentSpec, reason: str) -> None:
    """The agent was stopped on purpose (its wanted state is now ``stopped``).

    Called plugin by plugin after the stop succeeded. A stop of the whole daemon tells no one.
    Exceptions are logged and ignored.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :param reason: who stopped it: ``"stopped by the operator"``.
    """


@hookspec
def agent_crashed(hive: Hive, agent: AgentSpec, status: str, reason: str) -> None:
    """The agent went down on its own (crashed, crash-looping, or ended).

    It was running, and the backend reported it ``failing`` or ``stopped`` while no operation
    ran on it and the hive was not stopping. Called plugin by plugin once per such change (a
    crash-looping agent that never comes up again is told once; one that ran again and crashed
    again, twice), soon after the backend's ``hive.report_status``, on the core's one thread
    for crashes (in the order they were reported): the backend's thread is never held up.
    The agent's wanted state is unchanged (the backend, or the operator, brings it back).
    Exceptions are logged and ignored.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :param status: what the backend reported: ``"failing"`` (crash-looping, its unit failed)
        or ``"stopped"`` (it ended and nothing restarts it).
    :param reason: the backend's words (``"crashed, restarting (restart 4)"``), or, when it
        gave none, ``"it stopped on its own"`` / ``"it is failing"`` with the exit code if known.
    """


@hookspec
def agent_destroyed(hive: Hive, agent: AgentSpec, purge: bool, reason: str) -> None:
    """The agent's container is gone: destroyed, purged, or removed after a failed spawn.

    Called plugin by plugin after ``destroy`` and the core's cleanup. Not called for a purge
    of a tombstone (it was told when the agent was destroyed). Exceptions are logged and
    ignored.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :param purge: its kept state (repos, notes, creds) is gone too.
    :param reason: ``"destroyed by the operator"``, ``"purged by the operator"``, or
        ``"its spawn failed: <error>"``.
    """


# ------------------------------------------------------------------------------------------------
# Deploy phases (an approved apply): see DESIGN.md "the git-audited deploy"
# ------------------------------------------------------------------------------------------------


@hookspec
def deploy_step(hive: Hive, deploy: Deploy, step: str) -> None:
    """A deploy reached ``step``; announced before the step's work starts.

    Called plugin by plugin. Exceptions are logged and ignored: an observer never breaks a
    deploy. (A test plugin may end the process here to test crash recovery.)

    :param hive: the running hive.
    :param deploy: the deploy: its approval id, agent, sha and previous sha.
    :param step: in order: ``tagged`` (``approved/<id>`` and ``building/<id>`` planted),
        ``main-moved`` (``main`` and the working tree at the proposal), ``prepare``
        (``prepare_deploy`` about to run), ``build`` (the backend's rebuild about to run),
        ``verify`` (the build returned: :func:`health_check` is about to be asked),
        ``deployed`` (``deployed/<id>`` planted, status not yet written), ``finalized``.
    """


@hookspec
def prepare_deploy(hive: Hive, deploy: Deploy) -> None:
    """Get ready to build ``deploy``: ``main`` already points at the proposal.

    Must be undoable by :func:`abort_deploy`. Raising fails the deploy (``abort_deploy`` runs for
    every plugin, ``main`` goes back).

    :param hive: the running hive.
    :param deploy: the deploy about to be built.
    """


@hookspec
def finalize_deploy(hive: Hive, deploy: Deploy) -> None:
    """The build succeeded and ``deployed/<id>`` is tagged: make it permanent.

    Must be idempotent: after a crash, startup recovery calls it again for a deploy whose
    ``deployed/<id>`` exists. Called plugin by plugin; exceptions are logged and ignored: the
    build did succeed.

    :param hive: the running hive.
    :param deploy: the deploy that succeeded.
    """


@hookspec
def abort_deploy(hive: Hive, deploy: Deploy, reason: str) -> None:
    """The deploy failed (or was interrupted) after ``prepare_deploy`` may have run: undo it.

    Called on every failure path, also when ``prepare_deploy`` itself failed, and by startup
    recovery for an interrupted deploy, so it must cope with a prepare that never happened.
    Only undo this deploy's own changes: other agents' deploys may be in flight. Called plugin
    by plugin; exceptions are logged and ignored.

    :param hive: the running hive.
    :param deploy: the deploy that failed.
    :param reason: why, as the ``failed/<id>`` tag records it.
    """


@hookspec
def health_check(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> bool | str | None:
    """Is ``agent`` healthy after its build? The deploy's ``verify`` step asks it.

    Called plugin by plugin, again and again (every 0.2 s) after the backend's build returned
    (an approved apply: ``deploy`` is the deploy; a spawn: ``deploy`` is None), until every
    implementation agrees in one round or the deadline passes (``[hive] health_timeout``, or the
    agent's own from :func:`health_timeout`). Each call runs on a thread of its own and is not
    waited for past the deadline: return promptly (a probe with a short timeout of its own).
    Not called again for a deploy after a crash: an interrupted verification fails the deploy.

    :param hive: the running hive.
    :param agent: the agent just built.
    :param deploy: the deploy being verified; None for a spawn.
    :returns: True (healthy) or None (no opinion: not this plugin's agent); a string to say
        "not healthy yet" and why (asked again; at the deadline the deploy fails with it).
        Raising says "unhealthy for good": the deploy fails at once with the message, and is
        rolled back (the container rebuilt from the previous ``main``).
    """


@hookspec(firstresult=True)
def health_timeout(hive: Hive, agent: AgentSpec) -> float | None:
    """How long a deploy of ``agent`` may wait for it to become healthy, in seconds.

    Asked once per ``verify`` step, before the first :func:`health_check`; a backend answers
    from the agent's own config (the process backend: ``[health] timeout`` in ``agent.toml``).
    Raising fails the deploy (rolled back) with the message. Stops at first non-None result.

    :param hive: the running hive.
    :param agent: the agent about to be verified.
    :returns: the deadline in seconds (above 0), or None for ``[hive] health_timeout``.
    """


# ------------------------------------------------------------------------------------------------
# Crash points
# ------------------------------------------------------------------------------------------------


@hookspec
def checkpoint(hive: Hive, agent: str, point: str) -> None:
    """Durable state just changed at a declared crash point (:mod:`hivekit.crashpoints`).

    Called at every point of the deploy, spawn, deny, destroy, purge and rebuild paths, on the
    thread doing the work (also during startup recovery), right after what the point's table
    entry names became durable. For tests and tracing: the fake backend's crash control SIGKILLs
    the daemon here. Observers only: do nothing slow. Exceptions are logged and ignored.

    :param hive: the running hive.
    :param agent: the name of the agent the operation works on.
    :param point: the point's name, a key of ``hivekit.crashpoints.POINTS``.
    """


# ------------------------------------------------------------------------------------------------
# What the operator sees
# ------------------------------------------------------------------------------------------------


@hookspec
def agent_badges(hive: Hive, agent: AgentSpec) -> list[Badge | str] | None:
    """Short labels shown next to the agent ("needs login", "needs update").

    Return :class:`hivekit.records.Badge` objects (a label, a level — ``info``, ``warning`` or
    ``error`` — and a detail saying what it means and how to fix it); a plain string is a badge
    of level ``info``. Called plugin by plugin; exceptions are logged and that plugin's badges
    skipped.

    Runs when the agent's row is *made*, not for every snapshot: when the hive starts, when a
    lifecycle operation or a deploy on the agent ends, and when a plugin calls
    ``hive.refresh(agent)``. Between those the badges shown are the ones this returned last;
    so a plugin whose answer changes for another reason (a file appearing, a background check)
    calls ``hive.refresh(agent)`` then, from any thread. (The core's own ``needs login`` does:
    it watches the agents' creds dirs.) Not called for an agent being spawned.

    :param hive: the running hive.
    :param agent: the agent it is about.
    :returns: the badges, or None for none.
    """


@hookspec
def state_extras(hive: Hive, agents: list[AgentView]) -> dict[str, Any] | None:
    """Extra top-level keys for ``GET /api/state`` (e.g. ``port_conflicts``), JSON-ready.

    Called plugin by plugin, once at the daemon's start and whenever the snapshot is encoded
    anew after a change to an agent's row, a tombstone, an approval, a question or a transient:
    the snapshot is encoded once per event ``seq`` and shared by every client, so not for every
    request, nor for broker messages and log lines. Derive the keys from ``agents`` and the
    hive's store; for other state of your own, change it together with a row
    (``hive.refresh(agent)``). A key the core already uses, or one given by two plugins, is an
    error at start naming both. Exceptions are logged and that plugin's keys left out of that
    snapshot.

    :param hive: the running hive.
    :param agents: every agent's row, by name, as the snapshot shows it.
    :returns: the keys and their values, or None for none.
    """
