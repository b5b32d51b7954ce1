"""Memory and CPU limits for a whole agent, through the kernel's cgroups.

An agent's processes (its program, everything it starts, bubblewrap's) join one cgroup of their
own, ``hk-<hive>-<name>``, made beside the daemon's own cgroup, whose ``memory`` and ``cpu``
controllers enforce ``[process] memory`` (the agent's total: every process, its page cache and
tmpfs pages included; past it the kernel reclaims, then kills) and ``cpus`` (a share of CPU time,
``1.5`` = one and a half cores). The exec shim (:mod:`.launch`) moves itself in before it starts
the agent, so nothing of the agent ever runs outside it.

Which cgroup tree, probed once at start:

* **cgroup v2** (the unified tree): when the daemon's cgroup has the ``memory`` and ``cpu``
  controllers and is the daemon's to manage: the controllers are on for its children already,
  or can be turned on (a systemd unit with ``Delegate=yes``; the NixOS module's unit has it). The
  daemon moves itself into a ``hk-<hive>-daemon`` child first when its cgroup must have no
  processes of its own (the kernel's rule for a cgroup whose children have controllers).
* **cgroup v1** (separate ``memory`` and ``cpu`` hierarchies, still found in containers): when
  the daemon may make cgroups below its own in them.
* otherwise none: the backend falls back to rlimits and says at start what that leaves
  unenforced (:func:`fallback_warning`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path

from attrs import frozen

#: cgroup v2's CPU period (µs) that ``cpus`` is a quota of.
PERIOD = 100_000


@frozen
class Tree:
    """Where the hive makes its agents' cgroups, and which limits that enforces."""

    #: ``"v2"`` or ``"v1"``.
    kind: str
    #: The parent directory of each agent's cgroup, per controller (``memory``, ``cpu``); one
    #: directory for both on v2.
    parents: dict[str, Path]
    #: A prefix unique to this hive (its state dir): several hives may share a parent.
    prefix: str

    def enforces(self, controller: str) -> bool:
        return controller in self.parents

    def dirs(self, name: str) -> list[Path]:
        """The agent's cgroup directories (one on v2, one per controller on v1)."""
        return sorted({parent / f"{self.prefix}-{name}" for parent in self.parents.values()})

    def prepare(self, name: str, memory: int | None, cpus: float | None) -> list[Path]:
        """Make agent ``name``'s cgroup(s) with these limits (None: unlimited); returns the
        directories its processes must join. :class:`OSError` when the kernel refuses."""
        for d in self.dirs(name):
            d.mkdir(exist_ok=True)
        if self.kind == "v2":
            d = self.parents["memory"] / f"{self.prefix}-{name}"
            _write(d / "memory.max", str(memory) if memory else "max")
            _write(d / "cpu.max", f"{_quota(cpus)} {PERIOD}" if cpus else f"max {PERIOD}")
        else:
            if "memory" in self.parents:
                d = self.parents["memory"] / f"{self.prefix}-{name}"
                _write(d / "memory.limit_in_bytes", str(memory) if memory else "-1")
            if "cpu" in self.parents:
                d = self.parents["cpu"] / f"{self.prefix}-{name}"
                _write(d / "cpu.cfs_period_us", str(PERIOD))
                _write(d / "cpu.cfs_quota_us", str(_quota(cpus)) if cpus else "-1")
        return self.dirs(name)

    def remove(self, name: str) -> None:
        """Remove the agent's cgroup(s) once its processes are gone (else they stay)."""
        for d in self.dirs(name):
            with contextlib.suppress(OSError):
                d.rmdir()

    def sweep(self) -> None:
        """Remove what a previous daemon of this hive left (its agents died with it)."""
        for parent in set(self.parents.values()):
            with contextlib.suppress(OSError), os.scandir(parent) as entries:
                for entry in entries:
                    if entry.name.startswith(f"{self.prefix}-") and entry.is_dir() and \
                            not entry.name.endswith("-daemon"):
                        with contextlib.suppress(OSError):
                            os.rmdir(entry.path)

    def out_of_memory(self, name: str) -> bool:
        """Whether the kernel has killed a process of the agent's cgroup for want of memory."""
        parent = self.parents.get("memory")
        if parent is None:
            return False
        d = parent / f"{self.prefix}-{name}"
        stats = d / ("memory.events" if self.kind == "v2" else "memory.oom_control")
        try:
            for line in stats.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip() not in ("", "0"):
                    return True
        except OSError:
            pass
        return False


def _quota(cpus: float) -> int:
    return max(1000, int(cpus * PERIOD))


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _mounts() -> list[tuple[str, str, str]]:
    """``(mount point, fstype, super options)`` of every mount, from /proc/self/mountinfo."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) > 4 and len(rest) >= 3:
                    found.append((fields[4].replace("\\040", " "), rest[0], rest[2]))
    except OSError:
        pass
    return found


def _memberships() -> dict[str, str]:
    """Controller (``""`` for v2) → the daemon's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for c in controllers.split(",") if controllers else [""]:
                    found[c] = path
    except OSError:
        pass
    return found


def _can_make_children(parent: Path, prefix: str) -> str | None:
    probe = parent / f"{prefix}-probe"
    try:
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError as exc:
        return f"cannot make cgroups in {parent}: {exc.strerror}"
    return None


def _v2(prefix: str) -> Tree | str:
    member = _memberships().get("")
    mount = next((m for m, kind, _ in _mounts() if kind == "cgroup2"), None)
    if member is None or mount is None:
        return "no cgroup v2 tree"
    base = Path(mount) / member.lstrip("/")
    try:
        available = (base / "cgroup.controllers").read_text().split()
        enabled = (base / "cgroup.subtree_control").read_text().split()
    except OSError as exc:
        return f"cannot read {base}: {exc.strerror}"
    missing = [c for c in ("memory", "cpu") if c not in available]
    if missing:
        return f"cgroup v2 at {base} lacks the {' and '.join(missing)} controller"
    if problem := _can_make_children(base, prefix):
        return problem
    if not {"memory", "cpu"} <= set(enabled):
        try:
            _write(base / "cgroup.subtree_control", "+memory +cpu")
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return f"cannot turn on memory and cpu for {base}'s children: {exc.strerror}"
            # Processes of its own: only a cgroup that is the daemon's alone may be rearranged.
            procs = (base / "cgroup.procs").read_text().split()
            if procs != [str(os.getpid())]:
                return (f"{base} is shared with other processes (not delegated to the hive): "
                        "run hivekit serve in a unit of its own with Delegate=yes")
            own = base / f"{prefix}-daemon"
            try:
                own.mkdir(exist_ok=True)
                _write(own / "cgroup.procs", str(os.getpid()))
                _write(base / "cgroup.subtree_control", "+memory +cpu")
            except OSError as again:
                return f"cannot turn on memory and cpu for {base}'s children: {again.strerror}"
    return Tree("v2", {"memory": base, "cpu": base}, prefix)


def _v1(prefix: str) -> Tree | str:
    member = _memberships()
    parents: dict[str, Path] = {}
    problems = []
    for controller in ("memory", "cpu"):
        mount = next((m for m, kind, opts in _mounts()
                      if kind == "cgroup" and controller in opts.split(",")), None)
        if mount is None or controller not in member:
            problems.append(f"no cgroup v1 {controller} hierarchy")
            continue
        parent = Path(mount) / member[controller].lstrip("/")
        if problem := _can_make_children(parent, prefix):
            problems.append(problem)
            continue
        parents[controller] = parent
    if not parents:
        return "; ".join(problems)
    return Tree("v1", parents, prefix)


def probe(state_dir: Path) -> tuple[Tree | None, str]:
    """The cgroup tree agents' limits can use here, or None and why not."""
    prefix = "hk-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]
    v2 = _v2(prefix)
    if isinstance(v2, Tree):
        return v2, ""
    v1 = _v1(prefix)
    if isinstance(v1, Tree):
        return v1, ""
    return None, f"{v2}; {v1}"


def fallback_warning(why: str, memory: bool, cpus: bool, tree: Tree | None) -> str | None:
    """What a hive whose config sets ``memory``/``cpus`` loses without (part of) a cgroup tree;
    None when everything asked for is enforced."""
    lost = []
    if memory and not (tree and tree.enforces("memory")):
        lost.append("memory is enforced only per process, as RLIMIT_DATA (each process's heap "
                    "and other private writable memory, not the agent's total, not its page "
                    "cache or /tmp)")
    if cpus and not (tree and tree.enforces("cpu")):
        lost.append("cpus is not enforced at all")
    if not lost:
        return None
    return ("process: no cgroups for agents' limits here (" + (why or "partly available")
            + "): " + "; ".join(lost))
