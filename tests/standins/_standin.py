"""Shared state of the nixos-container and systemctl stand-ins (see their docstrings).

Everything lives under ``$NIXOS_STANDIN_ROOT``, laid out like the host the real programs touch:

    etc/nixos-containers/<c>.conf                 nixos-container's configurationDirectory
    var/lib/nixos-containers/<c>/                 its stateDirectory (the container's root)
    nix/var/nix/profiles/per-container/<c>/       the container's system profile
    nix/var/nix/gcroots/per-container/<c>/
    nix/store/<hash>-nixos-system-<attr>/         what the emulated `nix build` produces
    run/systemd/system/                           where runtime units and drop-ins go
    run/lock/nixos-container                      create's lock
    etc/nix/nix.conf                              the host's nix.conf (only its experimental
                                                  features are read); absent = flakes off
    systemd.json                                  units' states and what daemon-reload loaded
    calls.jsonl                                   every invocation: program, argv, cwd

Only the standard library: the stand-ins run as plain scripts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ENV = "NIXOS_STANDIN_ROOT"


def root() -> Path:
    value = os.environ.get(ENV)
    if not value:
        sys.stderr.write(f"stand-in: ${ENV} is not set (the stand-ins keep their state there)\n")
        sys.exit(100)
    return Path(value)


def conf_dir() -> Path:
    return root() / "etc" / "nixos-containers"


def state_dir() -> Path:
    return root() / "var" / "lib" / "nixos-containers"


def profiles_dir() -> Path:
    return root() / "nix" / "var" / "nix" / "profiles" / "per-container"


def gcroots_dir() -> Path:
    return root() / "nix" / "var" / "nix" / "gcroots" / "per-container"


def store_dir() -> Path:
    return root() / "nix" / "store"


def systemd_run_dir() -> Path:
    return root() / "run" / "systemd" / "system"


def record(prog: str, argv: list[str]) -> None:
    root().mkdir(parents=True, exist_ok=True)
    with locked("calls"), open(root() / "calls.jsonl", "a") as f:
        f.write(json.dumps({"prog": prog, "argv": argv, "cwd": os.getcwd()}) + "\n")


#: Locks this process holds; a stand-in it runs (run_sibling) is told, and does not wait for them.
HELD: set[str] = set()
HELD_ENV = "NIXOS_STANDIN_HELD_LOCKS"


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    if name in os.environ.get(HELD_ENV, "").split(","):
        yield  # our caller holds it and waits for us
        return
    HELD.add(name)
    lock_dir = root() / "run" / "lock"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"standin-{name}", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            HELD.discard(name)


# --- systemd's state -------------------------------------------------------------------------


def load_systemd() -> dict:
    path = root() / "systemd.json"
    if not path.exists():
        return {"units": {}, "loaded_dropins": {}}
    return json.loads(path.read_text())


def save_systemd(data: dict) -> None:
    path = root() / "systemd.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def dropins_on_disk() -> dict[str, dict[str, str]]:
    """``{unit: {file: content}}`` for every ``<unit>.d/*.conf`` under the runtime unit dir."""
    found: dict[str, dict[str, str]] = {}
    base = systemd_run_dir()
    if not base.is_dir():
        return found
    for d in sorted(base.glob("*.d")):
        files = {f.name: f.read_text() for f in sorted(d.glob("*.conf")) if f.is_file()}
        if files:
            found[d.name[:-2]] = files
    return found


def parse_env_file(text: str) -> dict[str, str]:
    """A systemd EnvironmentFile: KEY=VALUE lines, '#'/';' comments, one level of quotes."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def run_sibling(prog: str, *args: str) -> subprocess.CompletedProcess:
    """Run the other stand-in the way the real programs call each other (through PATH)."""
    exe = Path(__file__).with_name(prog)
    env = {**os.environ, HELD_ENV: ",".join(sorted(HELD))}
    return subprocess.run([sys.executable, str(exe), *args], capture_output=True, text=True,
                          env=env)


# --- nix, emulated ---------------------------------------------------------------------------
# The stand-in cannot evaluate Nix. It reads the flake's flake.nix and follows what a flake
# reaches on disk: inputs given as `path:/dir` or `git+file:///dir` (with `?rev=` read from git),
# and relative `./file.nix` references. Evaluation fails the way it fails for real when:
# the flake has no flake.nix; the flake does not mention the attribute asked for; or a file it
# reaches contains `throw "message"` (the way a test commits a broken config), or has brackets
# that do not pair up (nix's parser: "syntax error, unexpected end of file" when one is left
# open, "unexpected '}'" for one closed too many; the bison messages of nix's parser.y).
# Building takes no time, unless a file says `# standin: build-seconds N`: then the build takes
# N seconds, as a real system build does (a test of what happens meanwhile).

PATH_INPUT = re.compile(r"""(?:path:|git\+file://)(/[^"'?#\s;]+)(?:\?([^"'#\s;]*))?""")
REL_FILE = re.compile(r"""(?<![\w/.])(\./[\w./-]+\.nix)""")
THROW = re.compile(r"""throw\s+"((?:[^"\\]|\\.)*)\"""")
BUILD_SECONDS = re.compile(r"#\s*standin:\s*build-seconds\s+(\d+(?:\.\d+)?)")
_PAIRS = {"}": "{", "]": "[", ")": "("}


class NixError(Exception):
    """A failed evaluation/build: ``lines`` is what nix writes to stderr."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def strip_comments(text: str) -> str:
    """Nix source without its comments (``# …`` to the end of a line, ``/* … */``)."""
    # Block comments become their newlines, so line numbers stay right.
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out = []
    for line in text.splitlines():
        in_string, escaped = False, False
        for i, char in enumerate(line):
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = not in_string
            elif char == "#" and not in_string:
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def _read(path: Path, rev: str | None, repo: Path | None) -> str | None:
    if rev and repo is not None:
        rel = path.relative_to(repo).as_posix()
        proc = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{rel}"],
                              capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None
    return path.read_text() if path.is_file() else None


def _flake_dir(flake: str) -> Path | None:
    for prefix in ("path:", "git+file://", "file://"):
        if flake.startswith(prefix):
            flake = flake[len(prefix):]
            break
    flake = flake.split("?", 1)[0]
    return Path(flake) if flake.startswith("/") else None


def reachable(flake_nix: Path) -> Iterator[tuple[Path, str | None]]:
    """Every file a flake reaches from its ``flake.nix``, with its text (None: missing): local
    inputs (``path:``, ``git+file:`` with ``?rev=`` read from git) and ``./file.nix``."""
    seen: set[tuple[str, str | None]] = set()
    todo: list[tuple[Path, str | None, Path | None]] = [(flake_nix, None, None)]
    while todo:
        path, rev, repo = todo.pop(0)
        if (str(path), rev) in seen or len(seen) > 200:
            continue
        seen.add((str(path), rev))
        content = _read(path, rev, repo)
        yield path, content
        if content is None:
            continue
        code = strip_comments(content)
        for m in PATH_INPUT.finditer(code):
            d = Path(m.group(1))
            query = dict(p.split("=", 1) for p in (m.group(2) or "").split("&") if "=" in p)
            sub_rev = query.get("rev")
            todo.append((d / "flake.nix", sub_rev, d if sub_rev else None))
        for m in REL_FILE.finditer(code):
            todo.append(((path.parent / m.group(1)).resolve(), rev, repo))


def evaluate(flake: str, attr: str) -> str:
    """Check that ``flake#nixosConfigurations.<attr>`` evaluates; return a digest of its inputs."""
    top = _flake_dir(flake)
    if top is None:
        # Anything but a local flake would need the network.
        raise NixError([f"error: unable to download '{flake}': stand-in has no network "
                        "(only local path: and git+file: flakes are emulated)"])
    toplevel = f'nixosConfigurations."{attr}".config.system.build.toplevel'
    flake_nix = top / "flake.nix"
    if not flake_nix.is_file():
        # nix: "error: path '/x/flake.nix' does not exist"
        raise NixError([f"error: path '{flake_nix}' does not exist"])
    text = strip_comments(flake_nix.read_text())
    if "nixosConfigurations" not in text or not re.search(
            rf'"{re.escape(attr)}"|(^|[^\w-]){re.escape(attr)}\s*[=.;]', text, re.M):
        # nix's message when an installable's attribute path is missing.
        raise NixError([
            f"error: flake 'path:{top}' does not provide attribute "
            f"'packages.x86_64-linux.{toplevel}', 'legacyPackages.x86_64-linux.{toplevel}' "
            f"or '{toplevel}'"])
    digest = hashlib.sha256(f"{flake}#{attr}".encode())
    seconds = 0.0
    for path, content in reachable(flake_nix):
        if content is None:
            if path.name == "flake.nix":
                continue
            raise NixError([f"error: path '{path}' does not exist"])
        digest.update(str(path).encode() + b"\0" + content.encode())
        if m := BUILD_SECONDS.search(content):
            seconds = max(seconds, float(m.group(1)))
        content = strip_comments(content)
        _check_brackets(path, content)
        for lineno, line in enumerate(content.splitlines(), 1):
            m = THROW.search(line)
            if m:
                raise NixError([
                    "error:",
                    f"       … while evaluating the attribute '{toplevel}'",
                    "",
                    "       … while calling the 'throw' builtin",
                    f"         at {path}:{lineno}:{m.start() + 1}:",
                    "",
                    f"       error: {m.group(1)}",
                ])
    if seconds:
        time.sleep(seconds)
    return digest.hexdigest()[:32]


def _check_brackets(path: Path, text: str) -> None:
    """Raise nix's parse error when ``text``'s brackets (outside strings) do not pair up."""
    stack: list[tuple[str, int, int]] = []
    lines = text.splitlines() or [""]
    for lineno, line in enumerate(lines, 1):
        in_string, escaped = False, False
        for col, char in enumerate(line, 1):
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = not in_string
            elif in_string:
                continue
            elif char in "{[(":
                stack.append((char, lineno, col))
            elif char in _PAIRS:
                if not stack or stack[-1][0] != _PAIRS[char]:
                    raise NixError([f"error: syntax error, unexpected '{char}'",
                                    f"       at {path}:{lineno}:{col}:"])
                stack.pop()
    if stack:
        raise NixError(["error: syntax error, unexpected end of file",
                        f"       at {path}:{len(lines)}:{len(lines[-1]) + 1}:"])




# --- experimental features ---------------------------------------------------------------------
# Stock NixOS enables neither `nix-command` nor `flakes` (nix.settings.experimental-features is
# empty by default), and `nix build <flake>#...` needs both. Nix checks `nix-command` first (the
# `nix` CLI itself), then `flakes` (the flake reference); each refusal is
# src/libutil/experimental-features.cc's MissingExperimentalFeature, as Nix 2.18+ words it
# (NixOS 24.11 ships 2.24). What enables them, as Nix reads its settings: nix.conf
# (`experimental-features`, `extra-experimental-features`), then $NIX_CONFIG (same syntax), then
# the command line's `--option NAME VALUE` (nixos-container.pl passes `--option` through to
# `nix build` as two-argument @nixFlags). `NAME` replaces the set, `extra-NAME` adds to it.

NEEDED_FEATURES = ("nix-command", "flakes")


def _features(lines: list[tuple[str, str]]) -> set[str]:
    enabled: set[str] = set()
    for key, value in lines:
        if key == "experimental-features":
            enabled = set(value.split())
        elif key == "extra-experimental-features":
            enabled |= set(value.split())
    return enabled


def _conf_lines(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            out.append((key.strip(), value.strip()))
    return out


def enabled_features(options: list[tuple[str, str]]) -> set[str]:
    """The experimental features a `nix` call has, from nix.conf, $NIX_CONFIG and ``options``
    (its ``--option NAME VALUE`` pairs), in the order Nix applies them."""
    conf = root() / "etc" / "nix" / "nix.conf"
    lines = _conf_lines(conf.read_text()) if conf.is_file() else []
    lines += _conf_lines(os.environ.get("NIX_CONFIG", ""))
    lines += list(options)
    return _features(lines)


def check_features(options: list[tuple[str, str]]) -> None:
    enabled = enabled_features(options)
    for feature in NEEDED_FEATURES:
        if feature not in enabled:
            raise NixError([f"error: experimental Nix feature '{feature}' is disabled; add "
                            f"'--extra-experimental-features {feature}' to enable it"])


# --- activation --------------------------------------------------------------------------------
# A config whose unit cannot start builds fine and fails when activated. The stand-in spots such
# a unit in what a flake reaches, written on one line as
#   systemd.services.<name>.serviceConfig.ExecStart = "<anything>/bin/false";
# (a service running `false` exits 1 at once), and records it in the built system. Activating
# that system (switch-to-configuration test, below) then reports the unit failed.

FAILING_UNIT = re.compile(
    r"""systemd\.services\.(?:"([^"]+)"|([\w-]+))\.serviceConfig\.ExecStart\s*=\s*"[^"]*/bin/false"\s*;""")


def failing_units(flake: str) -> list[str]:
    """The units of ``flake``'s reachable files that fail to start (see above)."""
    top = _flake_dir(flake)
    if top is None:
        return []
    return sorted({f"{m.group(1) or m.group(2)}.service"
                   for _path, content in reachable(top / "flake.nix") if content is not None
                   for m in FAILING_UNIT.finditer(strip_comments(content))})


# The agent's own service (nix/agent-base.nix: hive-agent.service, Restart=always, RestartSec=2)
# runs `hivekit.agent.command`. A command set on one line to a program named `false`,
#   hivekit.agent.command = [ "<anything>/bin/false" ... ];
# exits 1 at once, every time: the start job succeeds (a simple service counts as started once
# it is forked, so switch-to-configuration reports nothing) and systemd restarts it every 2 s.
# The built system records such a unit as crash-looping (see the systemctl stand-in's `-M`).
CRASHING_COMMAND = re.compile(r'hivekit\.agent\.command\s*=\s*\[\s*"[^"]*/bin/false"')
AGENT_UNIT = "hive-agent.service"

# `hivekit.agent.health.<option> = <value>;` on one line: what nix/agent-base.nix renders into
# the system's etc/hive/health.json (builtins.toJSON of the four options, unset ones null). The
# values the stand-in understands are the options' types: a number, a "string", a list of
# "strings"; any other value is refused as the module system refuses a definition of the
# wrong type.
HEALTH_OPTION = re.compile(
    r"hivekit\.agent\.health\.(timeout|settle|http|command)\s*=\s*([^;]*);")
HEALTH_TYPES = {"timeout": "null or positive integer or floating point number, meaning >0",
                "settle": "null or positive integer or floating point number, meaning >0",
                "http": "null or string matching the pattern /[^[:space:]]*",
                "command": "null or non-empty (list of string)"}


def _health_value(option: str, text: str, path: Path) -> object:
    text = text.strip()
    value: object
    if re.fullmatch(r"\d+(\.\d+)?", text):
        value = float(text) if "." in text else int(text)
        ok = option in ("timeout", "settle") and value > 0
    elif re.fullmatch(r'"[^"]*"', text):
        value = text[1:-1]
        ok = option == "http" and re.fullmatch(r"/\S*", value) is not None
    elif re.fullmatch(r'\[(\s*"[^"]*")*\s*\]', text):
        value = re.findall(r'"([^"]*)"', text)
        ok = option == "command" and bool(value)
    else:
        value, ok = text, False
    if not ok:
        raise NixError([f"error: A definition for option `hivekit.agent.health.{option}' is "
                        f"not of type `{HEALTH_TYPES[option]}'. Definition values:",
                        f"       - In `{path}': {text}"])
    return value


def health_declared(flake: str) -> dict[str, object]:
    """What the system's etc/hive/health.json holds for ``flake`` (see above)."""
    declared: dict[str, object] = dict.fromkeys(sorted(HEALTH_TYPES))
    top = _flake_dir(flake)
    if top is None:
        return declared
    for path, content in reachable(top / "flake.nix"):
        if content is None:
            continue
        for m in HEALTH_OPTION.finditer(strip_comments(content)):
            declared[m.group(1)] = _health_value(m.group(1), m.group(2), path)
    return declared


def crash_looping_units(flake: str) -> list[str]:
    """The units of ``flake``'s system that start and then exit at once, again and again."""
    top = _flake_dir(flake)
    if top is None:
        return []
    found = any(CRASHING_COMMAND.search(strip_comments(content))
                for _path, content in reachable(top / "flake.nix") if content is not None)
    return [AGENT_UNIT] if found else []


def switch_to_configuration_test(system: Path) -> tuple[int, list[str]]:
    """``<system>/bin/switch-to-configuration test`` inside the container: exit code, stderr.

    From nixpkgs' pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs: it activates the
    configuration ("activating the configuration...", "setting up /etc..."), starts the new
    units, and when any failed prints "warning: the following units failed: <a>, <b>" (sorted)
    and exits 4. The new configuration stays activated either way: test never rolls back.
    """
    lines = ["activating the configuration...", "setting up /etc..."]
    try:
        failed = json.loads((system / "activation.json").read_text())["failed_units"]
    except (OSError, ValueError, KeyError):
        failed = []
    if failed:
        lines.append("warning: the following units failed: " + ", ".join(failed))
        return 4, lines
    return 0, lines


def build(flake: str, attr: str, out_link: Path,
          options: list[tuple[str, str]] = ()) -> Path:
    """``nix build -o <out_link> [--option K V]... <flake>#nixosConfigurations."<attr>"...``."""
    check_features(list(options))
    digest = evaluate(flake, attr)
    health = health_declared(flake)  # a definition of the wrong type fails the evaluation
    out = store_dir() / f"{digest}-nixos-system-{attr}-24.11"
    out.mkdir(parents=True, exist_ok=True)
    (out / "system").write_text("x86_64-linux")
    (out / "init").write_text("#!/bin/sh\n# stand-in system\n")
    (out / "source.json").write_text(json.dumps({"flake": flake, "attr": attr}))
    (out / "activation.json").write_text(json.dumps({
        "failed_units": failing_units(flake), "crash_looping": crash_looping_units(flake)}))
    # A toplevel's etc is the system's /etc (nix/agent-base.nix: environment.etc).
    (out / "etc" / "hive").mkdir(parents=True, exist_ok=True)
    (out / "etc" / "hive" / "health.json").write_text(
        json.dumps(health, sort_keys=True, separators=(",", ":")))
    try:
        if out_link.is_symlink() or out_link.exists():
            out_link.unlink()
        out_link.symlink_to(out)
    except OSError as exc:
        # nix creates the out-link (a GC root) in the current directory.
        raise NixError([f"error: creating symlink '{out_link}': {exc.strerror}"]) from None
    return out


def set_profile(profile: Path, system: Path) -> None:
    """``nix-env -p <profile> --set <system>``: a new generation link, then the profile link."""
    profile.parent.mkdir(parents=True, exist_ok=True)
    gens = [int(m.group(1)) for p in profile.parent.glob(f"{profile.name}-*-link")
            if (m := re.fullmatch(rf"{re.escape(profile.name)}-(\d+)-link", p.name))]
    link = profile.parent / f"{profile.name}-{max(gens, default=0) + 1}-link"
    link.symlink_to(system)
    tmp = profile.parent / f".{profile.name}.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(link.name)
    os.replace(tmp, profile)


# --- inside a container ------------------------------------------------------------------------
# `nixos-container run` runs its command in the container's namespaces through `su root -l`, so
# the container's own programs are found on the PATH a NixOS login shell sets (its /etc/profile,
# from nixos/modules/config/shells-environment.nix and programs/environment.nix: the wrappers,
# then each of environment.profiles' bin dirs). A stand-in container is a directory tree (its
# root); a program inside is a file there, at the path the container would see.

#: $PATH of a login shell on NixOS, for user ``{user}`` with home ``{home}``.
LOGIN_PATH = ("/run/wrappers/bin:{home}/.nix-profile/bin:/nix/profile/bin:"
              "{home}/.local/state/nix/profile/bin:/etc/profiles/per-user/{user}/bin:"
              "/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin")
#: Tells a program run inside a stand-in container where that container's root is.
CROOT_ENV = "NIXOS_STANDIN_CONTAINER_ROOT"
#: The path the program was run as, inside the container (what it would see as argv[0]).
EXE_ENV = "NIXOS_STANDIN_EXE"


def passwd(croot: Path, user: str) -> tuple[str, str] | None:
    """``(home, shell)`` of ``user`` in the container's /etc/passwd, None if there is none."""
    try:
        lines = (croot / "etc" / "passwd").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == user:
            return fields[5], fields[6]
    return None


def login_env(croot: Path, user: str) -> dict[str, str]:
    """What `su -l <user>` leaves of the environment: TERM, and HOME, SHELL, USER, LOGNAME and
    PATH set for the user (util-linux su: "clears all the environment variables except TERM")."""
    home, shell = passwd(croot, user) or ("/root", "/run/current-system/sw/bin/bash")
    env = {k: v for k, v in os.environ.items() if k == "TERM" or k == ENV}
    env.update(HOME=home, SHELL=shell, USER=user, LOGNAME=user,
               PATH=LOGIN_PATH.format(home=home, user=user), **{CROOT_ENV: str(croot)})
    return env


def lookup(croot: Path, program: str, path_var: str) -> tuple[str, Path] | None:
    """``(path inside, file on the host)`` of ``program`` as the container's execvp finds it."""
    candidates = [program] if "/" in program else [
        f"{d.rstrip('/')}/{program}" for d in path_var.split(":") if d.startswith("/")]
    for inside in candidates:
        host = croot / inside.lstrip("/")
        if host.is_file() and os.access(host, os.X_OK):
            return inside, host
    return None


def exec_in_container(croot: Path, argv: list[str], env: dict[str, str], not_found: str,
                      code: int = 127) -> None:
    """Replace this process with ``argv`` run inside the container, or say ``not_found``."""
    found = lookup(croot, argv[0], env.get("PATH", ""))
    if found is None:
        sys.stderr.write(not_found.format(prog=argv[0]) + "\n")
        sys.exit(code)
    inside, host = found
    env = {**env, CROOT_ENV: str(croot), EXE_ENV: inside}
    with open(host, "rb") as f:
        python = b"python" in f.readline()
    if python:
        # The stand-ins are Python scripts; `#!/usr/bin/env python3` would look python3 up on
        # the container's PATH, where there is none: run them with this interpreter.
        os.execve(sys.executable, [sys.executable, str(host), *argv[1:]], env)
    os.execve(str(host), argv, env)
