"""A Forgejo user and access token per agent, made through ``forgejo admin`` in the forge.

Each agent (and the manager) gets a Forgejo user named after it, and a token in
``<agent state>/forge-token`` (mode 0600; inside the container it is ``/state/forge-token``).
Everything is idempotent: a user Forgejo says already exists is fine, and an existing token file
is kept (Forgejo shows a token once: a new one is issued only when the file is missing).

How ``forgejo admin`` is run in a stock ``services.forgejo`` container (nixpkgs'
nixos/modules/services/misc/forgejo.nix): the package is on the *unit's* PATH only, not on the
system's, so ``nixos-container run`` (root's login shell inside) does not find ``forgejo``; and
Forgejo looks for app.ini next to its own binary unless told (``--work-path``/``--config``, or
the FORGEJO_WORK_DIR/FORGEJO_CUSTOM the unit sets). So the plugin asks the unit once
(``systemctl show`` inside the container: User, WorkingDirectory, Environment) and runs::

    nixos-container run <c> -- runuser -u <User> -- env PATH=<unit's PATH> forgejo \
        --work-path <FORGEJO_WORK_DIR> --custom-path <FORGEJO_CUSTOM> \
        --config <FORGEJO_CUSTOM>/conf/app.ini admin user ...

(``runuser``: Forgejo refuses to run as root; RUN_USER must match.) A failing call forgets what
was found, so a rebuilt forge container is asked again.

Nothing here may fail a spawn: callers catch, warn and let the next startup sweep retry.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
import time
from pathlib import Path

from hivekit import AgentSpec, CommandFailed, Hive, OperationFailed, run

from .config import ForgeConfig

log = logging.getLogger("hivekit.forge")

TOKEN_FILE = "forge-token"
#: What ``forgejo admin user create`` says (on stderr, exit 1) for a name that is taken.
USER_EXISTS = "user already exists"
#: What ``forgejo admin user delete`` says for a name that is not there.
USER_MISSING = "user does not exist"
#: What ``systemctl show`` asks of Forgejo's unit.
UNIT_PROPERTIES = ("LoadState", "User", "WorkingDirectory", "Environment")


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


class Forge:
    """``forgejo admin`` for one hive, its calls serialised (one sweep, many spawns)."""

    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        self.config: ForgeConfig = hive.plugin_config("forge")
        self._lock = threading.Lock()
        #: The ``forgejo admin`` command found in the forge container (None: not asked yet).
        self._found: list[str] | None = None

    def _program(self) -> str:
        program = self.config.nixos_container
        return str(self.hive.resolve_path(program)) if "/" in program else program

    def _in_container(self) -> list[str]:
        return [self._program(), "run", self.config.container, "--"]

    def admin_command(self) -> list[str]:
        """The command running ``forgejo admin`` (the configured one, else the one found)."""
        if self.config.command:
            return shlex.split(self.config.command)
        if self._found is None:
            self._found = self._discover()
        return self._found

    def _discover(self) -> list[str]:
        """How the container's Forgejo unit runs Forgejo: its user, PATH and directories."""
        unit, container = self.config.unit, self.config.container
        out = run([*self._in_container(), "systemctl", "show",
                   *(f"--property={p}" for p in UNIT_PROPERTIES), unit],
                  timeout=self.config.timeout)
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if props.get("LoadState") != "loaded":
            raise OperationFailed(
                f"forge: container {container} has no unit {unit} (LoadState="
                f"{props.get('LoadState', '?')}): set [forge] unit to Forgejo's unit there, or "
                "[forge] command to a command that runs `forgejo admin`")
        try:
            env = dict(item.split("=", 1) for item in shlex.split(props.get("Environment", ""))
                       if "=" in item)
        except ValueError as exc:
            raise OperationFailed(f"forge: cannot read {unit}'s Environment= in {container}: "
                                  f"{exc}") from None
        user = props.get("User", "")
        work = (env.get("FORGEJO_WORK_DIR") or env.get("GITEA_WORK_DIR")
                or props.get("WorkingDirectory", ""))
        custom = env.get("FORGEJO_CUSTOM") or env.get("GITEA_CUSTOM") or f"{work}/custom"
        path = env.get("PATH", "")
        missing = [what for what, value in (("User=", user), ("a work dir (FORGEJO_WORK_DIR or "
                   "WorkingDirectory=)", work), ("PATH", path)) if not value]
        if missing:
            raise OperationFailed(
                f"forge: {unit} in {container} does not say {', '.join(missing)}, so hivekit "
                "cannot run `forgejo admin` as the service does: set [forge] command")
        return [*self._in_container(), "runuser", "-u", user, "--", "env", f"PATH={path}",
                "forgejo", "--work-path", work, "--custom-path", custom,
                "--config", f"{custom}/conf/app.ini", "admin"]

    def _admin(self, *args: str) -> str:
        try:
            return run([*self.admin_command(), *args], timeout=self.config.timeout)
        except Exception:
            self._found = None  # the forge may have changed: ask its unit again next time
            raise

    def email(self, name: str) -> str:
        return f"{name}@{self.config.email_domain}"

    def token_path(self, agent: AgentSpec) -> Path:
        return agent.paths.state / TOKEN_FILE

    def present(self) -> bool:
        """Whether the forge runs: the probe exits 0 and says ``up`` (no probe: assume so)."""
        if self.config.probe is None:
            probe = [self._program(), "status", self.config.container]
        else:
            probe = shlex.split(self.config.probe)
        if not probe:
            return True
        try:
            out = run(probe, timeout=self.config.timeout)
        except Exception as exc:  # a missing container, or no nixos-container at all
            log.debug("forge probe %s: %s", self.config.probe, exc)
            return False
        return out.strip().splitlines()[-1:] == ["up"]

    def ensure(self, agent: AgentSpec) -> tuple[bool, bool]:
        """Make the agent's user and token exist; ``(user created, token issued)``."""
        with self._lock:
            created = self._create_user(agent.name)
            path = self.token_path(agent)
            if path.is_file() and path.read_text().strip():
                os.chmod(path, 0o600)
                return created, False
            write_secret(path, self._issue_token(agent.name))
            return created, True

    def _create_user(self, name: str) -> bool:
        try:
            # stdout holds the generated password: it is neither logged nor kept.
            self._admin("user", "create", "--username", name, "--email", self.email(name),
                        "--random-password", "--must-change-password=false")
        except CommandFailed as exc:
            if USER_EXISTS in exc.stderr_tail:
                return False
            raise
        return True

    def _issue_token(self, name: str) -> str:
        # A clock in the name: a token issued earlier (its file lost) keeps its own name.
        token_name = "hivekit-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + \
            f".{time.time_ns() % 1_000_000:06d}"
        out = self._admin("user", "generate-access-token", "--username", name,
                          "--token-name", token_name, "--scopes", self.config.scopes, "--raw")
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        token = lines[-1] if lines else ""
        if not token or any(c.isspace() for c in token):
            raise OperationFailed(f"forge: generate-access-token for {name!r} printed no token")
        return token

    def delete_user(self, name: str) -> bool:
        """Delete the agent's user for good, with its repositories; False if there was none.

        ``--purge``: without it Forgejo refuses a user who owns a repository ("user still has
        ownership of repositories"), and a later agent of the same name would inherit the
        user, its repositories and a token for them.
        """
        with self._lock:
            try:
                self._admin("user", "delete", "--username", name, "--purge")
            except CommandFailed as exc:
                if USER_MISSING in exc.stderr_tail:
                    return False
                raise
            return True


def forge_for(hive: Hive) -> Forge:
    return hive.plugin_state("forge", lambda: Forge(hive))
