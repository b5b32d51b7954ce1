"""The production backend (bundled plugin ``nixos_container``): every agent is a NixOS container.

Enable it with ``[hive] backend = "nixos_container"``. Each agent runs in an imperative NixOS
container managed through ``nixos-container`` and systemd:

* container name: ``h-<name>`` for agents; the manager's container is named after the manager
  itself (as in hive-c0re, whose manager container ``hm1nd`` keeps working when the manager is
  named so). ``nixos-container`` caps names at 11 characters, hence the 9-character agent names.
* **spawn**: ``nixos-container create <c> --flake <ref>#<name>``, then the conf rewrite (host
  network, bind mounts; see :mod:`.conf`), the agent's identity environment
  (``<runtime>/identity.env``, ``/run/hive/identity.env`` inside), the resource-limit drop-in,
  ``systemctl daemon-reload`` and ``nixos-container start <c>``. A failed spawn removes what
  it created.
* **rebuild**: the same conf and limits, then ``nixos-container update <c> --flake
  <ref>#<name>`` (the attribute always given again: the conf stores ``FLAKE=`` without it, and a
  bare ``update`` would build ``#container``), then stop and start, so that nspawn-level changes
  (binds, network) apply. ``update`` sets the container's system profile *before* it reloads a
  running container (``switch-to-configuration test``), so a config that builds but fails to
  activate, or a start that fails, would leave the profile on the failed system, booted at the
  next start. Whenever the profile moved and the rebuild then failed, the profile is set back
  to the system it held before (``nix-env -p <profile> --set <system>``) and the container is
  restarted on it, before the failure is reported.
* ``create`` and ``update`` build a flake, which needs the ``nix-command`` and ``flakes``
  experimental features: stock NixOS enables neither, so every call turns them on for itself
  (``--option extra-experimental-features 'nix-command flakes'``, which nixos-container passes
  on to ``nix build``), and needs nothing in the host's nix.conf.
* **start** re-applies the conf and limits (the drop-in lives under ``/run``, gone after a host
  reboot) before ``nixos-container start``; **stop**, **destroy** (a missing container is not an
  error; the drop-in goes too); **is_running**: ``systemctl is-active --quiet
  container@<c>.service`` (the core asks it only when it knows nothing newer).
* **status**: one ``systemctl list-units 'container@*'`` every ``status_interval`` seconds
  reports every container whose status changed (see :mod:`.status`); every operation above
  reports what it left behind. A snapshot of the hive runs no command at all.
* **health** (the deploy's ``verify`` step, after a spawn or rebuild): the container unit and
  the agent's ``hive-agent.service`` inside it active and not restarted since the build, for
  ``health_settle`` seconds, then the probes the agent's NixOS config declares
  (``hivekit.agent.health``); see :mod:`.health`.

``<ref>`` comes from the ``agent_flake_ref`` hook (the meta_flake plugin answers it), else from
this plugin's table (``[nixos_container.agents.<name>] flake``, then ``[nixos_container] flake``).
Every command streams its output line by line to the hive's log and the dashboard's live log;
a failure carries the command line and the last 32 lines of stderr. Commands run in a writable
working directory per container (``create``/``update`` leave a ``.tmp`` link in the current
directory, so two builds must not share one).
"""

from __future__ import annotations

import logging
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from hivekit import (
    CommandFailed,
    OperationFailed,
    PluginError,
    ProgramMissing,
    environment_file,
    hookimpl,
    run,
)

from . import health
from .conf import LIMITS_FILE, Bind, check_path, limits_dropin, rewrite, write_if_changed
from .config import NixosContainerConfig
from .status import Watcher

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hivekit import AgentSpec, Deploy, ExecPlan, Hive, Mount

log = logging.getLogger("hivekit.nixos_container")

PLUGIN = "nixos_container"
#: Prefix of every agent's container name (the manager's excepted).
PREFIX = "h-"
#: nixos-container's limit on container names (they end up in network interface names).
MAX_CONTAINER_NAME = 11
#: nixos-container's message when a verb (other than destroy) names a missing container.
DOES_NOT_EXIST = "does not exist"
#: nixos-container's message when `systemctl reload` (switch-to-configuration test) failed.
RELOAD_FAILED = "failed to reload container"
#: Passed to every build: flakes without any nix.conf (nixos-container hands `--option` to nix).
FLAKES = ("--option", "extra-experimental-features", "nix-command flakes")

# Where things appear inside a container.
RUNTIME_MOUNT = "/run/hive"
SHARED_MOUNT = "/shared"
MANAGER_NOTES_MOUNT = "/state"
MANAGER_AGENTS_MOUNT = "/agents"
MANAGER_APPLIED_MOUNT = "/applied"
MANAGER_META_MOUNT = "/meta"
#: The agent's identity environment, in its runtime dir: ``/run/hive/identity.env`` inside
#: (``nix/agent-base.nix`` names the same path).
IDENTITY_FILE = "identity.env"


# --- names, paths, settings ------------------------------------------------------------------


def settings(hive: Hive) -> NixosContainerConfig:
    return hive.plugin_config(PLUGIN)


def container_name(hive: Hive, name: str) -> str:
    """``h-<name>``; the manager's container is named after the manager."""
    return name if name == hive.manager else f"{PREFIX}{name}"


def _host_path(hive: Hive, path: Path) -> Path:
    # Relative paths in the config file are relative to the file's directory.
    return path if path.is_absolute() else (hive.config.base_dir / path).resolve()


def _program(hive: Hive, program: str) -> str:
    if "/" in program and not program.startswith("/"):
        return str((hive.config.base_dir / program).resolve())
    return program


def conf_path(hive: Hive, container: str) -> Path:
    return _host_path(hive, settings(hive).containers_conf_dir) / f"{container}.conf"


def dropin_dir(hive: Hive, container: str) -> Path:
    return _host_path(hive, settings(hive).systemd_run_dir) / f"container@{container}.service.d"


def work_dir(hive: Hive, container: str) -> Path:
    base = settings(hive).work_dir
    root = _host_path(hive, base) if base else hive.paths.state_dir / "nixos-container"
    path = root / container
    path.mkdir(parents=True, exist_ok=True)
    return path


def binds(hive: Hive, agent: AgentSpec) -> list[Bind]:
    """What the agent's container gets bound in (sources are host paths)."""
    p = agent.paths
    notes = MANAGER_NOTES_MOUNT if agent.is_manager else f"/agents/{agent.name}/state"
    out = [
        Bind(p.runtime, RUNTIME_MOUNT),
        Bind(p.creds, settings(hive).creds_mount),
        Bind(p.state, notes),
        Bind(hive.paths.shared, SHARED_MOUNT),
    ]
    if agent.is_manager:
        out += [
            Bind(hive.paths.agents_root, MANAGER_AGENTS_MOUNT),
            Bind(hive.paths.applied_root, MANAGER_APPLIED_MOUNT, read_only=True),
            Bind(hive.paths.meta, MANAGER_META_MOUNT, read_only=True),
        ]
    return out


def flake_ref(hive: Hive, agent: AgentSpec) -> str:
    """The flake to build ``agent`` from: the ``agent_flake_ref`` hook's, else the config's."""
    ref = hive.hook.agent_flake_ref(hive=hive, agent=agent)
    if ref:
        return str(ref)
    cfg = settings(hive)
    ref = cfg.agent(agent.name).flake or cfg.flake
    if ref:
        return ref
    raise OperationFailed(
        f"no flake to build {agent.name!r} from: enable the meta_flake plugin "
        f"([hive] enable = [\"meta_flake\"]), or set [{PLUGIN}] flake (or "
        f"[{PLUGIN}.agents.{agent.name}] flake) to a flake with nixosConfigurations."
        f"{agent.name}")


# --- running things --------------------------------------------------------------------------


def _run(hive: Hive, agent: AgentSpec, argv: list[str], container: str, timeout: float) -> str:
    """Run ``argv`` in the container's working directory, streaming its output to the log."""
    hive.log(agent, "$ " + " ".join(argv))
    # Cancelled when the hive stops: a build can take many minutes, and a stop waits for none.
    return run(argv, cwd=work_dir(hive, container), timeout=timeout,
               on_line=hive.line_logger(agent), cancel=hive.stopping)


def nixos_container(hive: Hive, agent: AgentSpec, *args: str, build: bool = False) -> str:
    """Run ``nixos-container <args>``. A failed build (``build=True``: ``create``, ``update``)
    is an :class:`OperationFailed` with the command and nix's error as its message, which the
    operator reads in the approval and its ``failed/<id>`` tag."""
    cfg = settings(hive)
    argv = [_program(hive, cfg.nixos_container), *args]
    container = container_name(hive, agent.name)
    if not build:
        return _run(hive, agent, argv, container, cfg.timeout)
    try:
        return _run(hive, agent, argv, container, cfg.build_timeout)
    except CommandFailed as exc:
        raise OperationFailed(str(exc)) from exc


def systemctl(hive: Hive, agent: AgentSpec, *args: str) -> str:
    cfg = settings(hive)
    argv = [_program(hive, cfg.systemctl), *args]
    return _run(hive, agent, argv, container_name(hive, agent.name), cfg.timeout)


def profile_path(hive: Hive, container: str) -> Path:
    """The container's system profile (nixos-container.pl: per-container/<c>/system)."""
    return _host_path(hive, settings(hive).profiles_dir) / container / "system"


def profile_system(profile: Path) -> Path | None:
    """The store path the profile points at now (through its generation link), if any."""
    try:
        return profile.resolve(strict=True)
    except OSError:
        return None


def roll_back(hive: Hive, agent: AgentSpec, container: str, system: Path,
              was_running: bool) -> None:
    """Point the profile at ``system`` again and boot it (if the container was running)."""
    cfg = settings(hive)
    profile = profile_path(hive, container)
    hive.log(agent, f"bringing {container} back to its previous system {system}", "hive")
    _run(hive, agent, [_program(hive, cfg.nix_env), "-p", str(profile), "--set", str(system)],
         container, cfg.timeout)
    nixos_container(hive, agent, "stop", container)
    starts(hive).forget(agent.name)
    watcher(hive).mark(agent.name, "stopped")
    if was_running:
        nixos_container(hive, agent, "start", container)
        watcher(hive).mark(agent.name, "running")


def watcher(hive: Hive) -> Watcher:
    """The hive's one status watcher (made on first use)."""
    def make() -> Watcher:
        cfg = settings(hive)
        return Watcher(hive, _program(hive, cfg.systemctl), cfg.status_interval,
                       min(cfg.timeout, 30.0), container_name)

    return hive.plugin_state(PLUGIN, make)


def starts(hive: Hive) -> health.Starts:
    """When each container's last build started it (the health check's settle clock)."""
    return hive.plugin_state(f"{PLUGIN}.starts", health.Starts)


def list_containers(hive: Hive) -> list[str]:
    """``nixos-container list``, keeping hivekit's containers (``h-*`` and the manager's)."""
    cfg = settings(hive)
    out = run([_program(hive, cfg.nixos_container), "list"], timeout=cfg.timeout)
    names = [line.strip() for line in out.splitlines()]
    manager = container_name(hive, hive.manager)
    return [n for n in names if n.startswith(PREFIX) or n == manager]


def configure(hive: Hive, agent: AgentSpec, container: str) -> None:
    """Bind sources, the conf rewrite and the limits drop-in; ``daemon-reload`` if it changed.

    Idempotent: files are only written when their content changes.
    """
    cfg = settings(hive)
    wanted = binds(hive, agent)
    conf = conf_path(hive, container)
    if not conf.is_file():
        raise OperationFailed(
            f"container {container} has no conf at {conf}: set [{PLUGIN}] containers_conf_dir "
            "to nixos-container's configuration directory (/etc/nixos-containers on NixOS)")
    # Checked (and rendered) before anything is written.
    new = rewrite(conf.read_text(), wanted, container)
    for bind in wanted:
        # systemd-nspawn refuses to start when a bind source is missing.
        bind.source.mkdir(parents=True, exist_ok=True)
    if write_if_changed(conf, new):
        hive.log(agent, f"wrote {conf} (host network, {len(wanted)} binds)")
    # The agent's identity, as the container sees it: nix/agent-base.nix reads it as the agent
    # service's EnvironmentFile (through the runtime dir's bind at /run/hive).
    env = hive.agent_env(agent)
    try:
        text = environment_file(env)
    except ValueError as exc:
        raise OperationFailed(f"cannot write {agent.name}'s identity: {exc}") from None
    write_if_changed(agent.paths.runtime / IDENTITY_FILE, text, mode=0o644)
    memory, cpu = cfg.memory_max_of(agent.name), cfg.cpu_quota_of(agent.name)
    dropin = dropin_dir(hive, container) / LIMITS_FILE
    if write_if_changed(dropin, limits_dropin(memory, cpu), mode=0o644):
        hive.log(agent, f"wrote {dropin} (MemoryMax={memory}, CPUQuota={cpu})")
        systemctl(hive, agent, "daemon-reload")


def remove_container(hive: Hive, agent: AgentSpec, container: str) -> None:
    """``nixos-container destroy`` (a missing container is fine), then hivekit's own files."""
    nixos_container(hive, agent, "destroy", container)
    shutil.rmtree(dropin_dir(hive, container), ignore_errors=True)
    shutil.rmtree(work_dir(hive, container), ignore_errors=True)


def _check_binds(hive: Hive, agent: AgentSpec, container: str) -> None:
    for bind in binds(hive, agent):
        check_path(bind.source, container)


# --- hooks -----------------------------------------------------------------------------------


@hookimpl
def config_schema() -> type:
    return NixosContainerConfig


@hookimpl
def startup(hive: Hive) -> None:
    """Refuse to run on a host or config this backend cannot work with, and report strays."""
    cfg = settings(hive)
    for key in ("nixos_container", "systemctl", "nix_env"):
        program = _program(hive, getattr(cfg, key))
        if shutil.which(program) is None:
            raise PluginError(
                f"{PLUGIN}: program {program!r} was not found: enable NixOS containers on this "
                f"host (boot.enableContainers) or set [{PLUGIN}] {key} to its path")
    manager = container_name(hive, hive.manager)
    if (len(manager) > MAX_CONTAINER_NAME or not re.fullmatch(r"[a-zA-Z0-9_-]+", manager)
            or manager.startswith(PREFIX)):
        raise PluginError(
            f"{PLUGIN}: the manager's name {hive.manager!r} cannot name its container: "
            f"nixos-container takes 1-{MAX_CONTAINER_NAME} letters, digits, '-' or '_', and "
            f"'{PREFIX}*' is reserved for agents; set [hive] manager to another name")
    for root in (hive.paths.state_dir, hive.paths.runtime_dir):
        check_path(root, "(every container)", "hive directory")
    watcher(hive).start()
    try:
        existing = set(list_containers(hive))
    except Exception as exc:
        log.warning("%s: could not list containers: %s", PLUGIN, exc)
        return
    registered = {container_name(hive, n) for n in hive.agent_names()}
    for stray in sorted(existing - registered):
        log.warning("%s: container %s exists but hivekit has no such agent; remove it with "
                    "`nixos-container destroy %s` if it is a leftover", PLUGIN, stray, stray)
    for missing in sorted(registered - existing):
        log.warning("%s: agent container %s is missing; rebuild will fail until the agent is "
                    "destroyed and spawned again", PLUGIN, missing)


@hookimpl
def agent_mounts(hive: Hive, agent: AgentSpec) -> list[Mount]:
    """The container's binds (see :func:`binds`): the manager sees the applied repos at
    /applied, so its ``applied`` remotes are /applied/<n>/.git."""
    from hivekit import Mount

    return [Mount(b.source, b.target, b.read_only) for b in binds(hive, agent)]


@hookimpl
def initial_config_files(hive: Hive, agent: AgentSpec) -> dict[str, str]:
    # The templates (agent_templates) are the process backend's; a NixOS agent's harness is
    # the `hivekit.agent.command` of its module (agent.nix).
    files = resources.files(__package__)
    return {
        target: files.joinpath(source).read_text().replace("@name@", agent.name)
        for target, source in (("agent.nix", "seed-agent.nix"), ("flake.nix", "seed-flake.nix"))
    }


@hookimpl
def spawn(hive: Hive, agent: AgentSpec) -> None:
    container = container_name(hive, agent.name)
    ref = flake_ref(hive, agent)
    _check_binds(hive, agent, container)
    if conf_path(hive, container).exists():
        raise OperationFailed(
            f"container {container} already exists, but hivekit has no agent {agent.name!r} "
            f"(a leftover?); remove it with `nixos-container destroy {container}` and retry")
    try:
        nixos_container(hive, agent, "create", container, "--flake", f"{ref}#{agent.name}",
                        *FLAKES, build=True)
        configure(hive, agent, container)
        nixos_container(hive, agent, "start", container)
        starts(hive).mark(agent.name)
        watcher(hive).mark(agent.name, "running")
    except BaseException:
        # A failed spawn registers nothing, so leave no container behind: a failed create
        # keeps its conf file, and the next create of the name would say "already exists".
        try:
            remove_container(hive, agent, container)
        except Exception as exc:
            log.error("%s: removing the half-made container %s failed: %s", PLUGIN, container,
                      exc)
        raise


@hookimpl
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    container = container_name(hive, agent.name)
    ref = flake_ref(hive, agent)
    _check_binds(hive, agent, container)
    if not conf_path(hive, container).exists():
        raise OperationFailed(
            f"container {container} does not exist ({conf_path(hive, container)} is missing): "
            f"destroy {agent.name!r} and spawn it again")
    configure(hive, agent, container)
    profile = profile_path(hive, container)
    previous = profile_system(profile)
    was_running = is_running(hive, agent)
    try:
        nixos_container(hive, agent, "update", container, "--flake", f"{ref}#{agent.name}",
                        *FLAKES, build=True)
        # update only reloads a running container; binds and networking apply at a fresh start.
        nixos_container(hive, agent, "stop", container)
        starts(hive).forget(agent.name)
        nixos_container(hive, agent, "start", container)
        starts(hive).mark(agent.name)
        watcher(hive).mark(agent.name, "running")
    except Exception as exc:
        raise _after_failed_rebuild(hive, agent, container, exc, previous, was_running) from exc


def _after_failed_rebuild(hive: Hive, agent: AgentSpec, container: str, exc: Exception,
                          previous: Path | None, was_running: bool) -> OperationFailed:
    """The error to report for a failed rebuild, once the container is back where it was."""
    from hivekit import describe

    message = describe(exc)
    # A failed update is an OperationFailed (see nixos_container) over the command's failure.
    command = exc if isinstance(exc, CommandFailed) else exc.__cause__
    if isinstance(command, CommandFailed) and RELOAD_FAILED in command.stderr_tail:
        message += (f"\nThe new system was built but did not activate in {container} (a unit "
                    f"failed to start): see `journalctl -u container@{container}.service` or "
                    f"`nixos-container run {container} -- journalctl -b -p err`.")
    now = profile_system(profile_path(hive, container))
    if previous is None or now == previous:
        return OperationFailed(message)  # the profile never moved: nothing to undo
    try:
        roll_back(hive, agent, container, previous, was_running)
    except Exception as again:
        return OperationFailed(
            f"{message}\nSetting {container} back to its previous system {previous} failed "
            f"too: {describe(again)}. Its profile still points at the failed system {now}, "
            f"which its next start boots: run `hivekit rebuild {agent.name}` once the cause "
            "is fixed.")
    return OperationFailed(f"{message}\n{container} was brought back to its previous system "
                           f"{previous}" + (" and restarted." if was_running else "."))


@hookimpl
def start(hive: Hive, agent: AgentSpec) -> None:
    container = container_name(hive, agent.name)
    _check_binds(hive, agent, container)
    if conf_path(hive, container).exists():
        configure(hive, agent, container)
    nixos_container(hive, agent, "start", container)
    watcher(hive).mark(agent.name, "running")


@hookimpl
def stop(hive: Hive, agent: AgentSpec) -> None:
    container = container_name(hive, agent.name)
    try:
        nixos_container(hive, agent, "stop", container)
    except CommandFailed as exc:
        if DOES_NOT_EXIST not in exc.stderr_tail:
            raise
        hive.log(agent, f"container {container} does not exist: nothing to stop")
    watcher(hive).mark(agent.name, "stopped")


@hookimpl
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> None:
    remove_container(hive, agent, container_name(hive, agent.name))
    starts(hive).forget(agent.name)
    watcher(hive).forget(agent.name)


@hookimpl
def health_check(hive: Hive, agent: AgentSpec) -> bool | str:
    """The container and its agent service up since the build, then the declared probes."""
    cfg = settings(hive)
    container = container_name(hive, agent.name)
    return health.check(
        agent, container=container, systemctl=_program(hive, cfg.systemctl),
        journalctl=_program(hive, cfg.journalctl),
        system=profile_system(profile_path(hive, container)),
        settled=starts(hive).since(agent.name), settle=cfg.health_settle,
        timeout=min(cfg.timeout, 30.0),
        run_in=[_program(hive, cfg.nixos_container), "run", container, "--"])


@hookimpl
def health_timeout(hive: Hive, agent: AgentSpec) -> float | None:
    """``[nixos_container.agents.<n>] health_timeout``, else what the built system declares."""
    own = settings(hive).agent(agent.name).health_timeout
    if own is not None:
        return own
    container = container_name(hive, agent.name)
    return health.load(profile_system(profile_path(hive, container))).timeout


#: The agent's service inside its container (nix/agent-base.nix).
AGENT_UNIT = health.AGENT_UNIT
#: Environment passed from the CLI to ``nixos-container run`` (nothing of the agent's: the
#: command runs in the container, which has its own).
HOST_ENV = ("PATH", "LANG", "LC_ALL", "TERM")
#: Run inside the container by ``hivekit exec``: each credential key in the creds dir becomes
#: a variable of the command's (as for the agent), then the command runs.
WITH_CREDS = ('for f in "$0"/env/*; do [ -f "$f" ] && export "${f##*/}=$(cat "$f")"; done; '
              'exec "$@"')


@hookimpl
def agent_exec(hive: Hive, agent: AgentSpec, argv: list[str], tty: bool) -> ExecPlan:
    """``nixos-container run <c> -- CMD``: in the container (which must be running), with the
    agent's creds dir at ``creds_mount`` and its keys in the command's environment."""
    import os

    from hivekit import ExecPlan

    cfg = settings(hive)
    container = container_name(hive, agent.name)
    if not conf_path(hive, container).exists():
        raise OperationFailed(f"container {container} does not exist: nothing to run in")
    return ExecPlan(
        argv=[_program(hive, cfg.nixos_container), "run", container, "--", "sh", "-c",
              WITH_CREDS, cfg.creds_mount, *argv],
        env={k: os.environ[k] for k in HOST_ENV if k in os.environ})


@hookimpl
def agent_logs(hive: Hive, agent: AgentSpec, lines: int,
               follow: bool) -> Iterator[str | None]:
    """The journal of the agent's service inside its container (``journalctl -M <c>``)."""
    cfg = settings(hive)
    argv = [_program(hive, cfg.journalctl), "-M", container_name(hive, agent.name), "-u",
            AGENT_UNIT, "-o", "cat", "--no-pager", "-n", str(lines)]
    if follow:
        from hivekit import follow as follow_lines

        return follow_lines([*argv, "-f"])
    return iter(run(argv, timeout=cfg.timeout).splitlines())


@hookimpl
def is_running(hive: Hive, agent: AgentSpec) -> bool:
    cfg = settings(hive)
    unit = f"container@{container_name(hive, agent.name)}.service"
    try:
        run([_program(hive, cfg.systemctl), "is-active", "--quiet", unit],
                 timeout=min(cfg.timeout, 30.0))
    except CommandFailed:
        return False  # inactive, failed, unknown (exit 3), or too slow to say
    except ProgramMissing as exc:
        log.error("%s: %s", PLUGIN, exc)
        return False
    return True
