"""The dashboard (bundled plugin ``dashboard``): the operator's live control room in a browser.

It serves, on TCP (default ``127.0.0.1:7000``), the same HTTP API as the admin socket plus the
page (``index.html``, ``app.js``, ``style.css``: shipped in this package, no build step, nothing
fetched at run time). Every request needs the access token kept in ``<state_dir>/dashboard-token``
(0600); ``hivekit dashboard`` prints the ready URL. See ``README.md`` beside this file.

The module stays light (every CLI invocation imports it): the server lives in :mod:`.server`,
imported when the daemon starts.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

from hivekit import hookimpl

if TYPE_CHECKING:
    import click

    from hivekit import AgentView, Hive

    from .server import DashboardServer

log = logging.getLogger("hivekit.dashboard")

#: The access token's file name, under the state dir.
TOKEN_FILE = "dashboard-token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _port(_inst: Any, att: attrs.Attribute, value: int | None) -> None:
    if value is not None and not 0 <= value < 65536:
        raise ValueError(f"{att.name} must be a TCP port (1-65535, or 0 for any free port), "
                         f"got {value}")


def _absolute(_inst: Any, att: attrs.Attribute, value: Path | None) -> None:
    # Existence is checked at start: a config is also checked where the secret is not (a Nix
    # build).
    if value is not None and not value.is_absolute():
        raise ValueError(f"must be an absolute path, got {str(value)!r}")


def token_path(state_dir: Path, settings: DashboardConfig) -> Path:
    """Where the access token is: ``token_file``, else ``<state_dir>/dashboard-token``."""
    return settings.token_file or state_dir / TOKEN_FILE


@frozen
class DashboardConfig:
    """The ``[dashboard]`` table."""

    #: The address to listen on. Anything but a loopback address needs ``allow_remote``.
    host: str = "127.0.0.1"
    #: The TCP port; None = ``[hive] dashboard_port`` (7000); 0 = any free port (see the log or
    #: ``hivekit dashboard`` for the one chosen).
    port: int | None = attrs.field(default=None, validator=_port)
    #: Serve beyond this machine (the token still guards every request, over plain HTTP).
    allow_remote: bool = False
    #: A file holding the access token, given by the operator (a secret manager's file, a
    #: systemd credential): read at start, never written. None: ``<state_dir>/dashboard-token``,
    #: made (random) at the first start.
    token_file: Path | None = attrs.field(default=None, validator=_absolute)

    def __attrs_post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("host must not be empty (default 127.0.0.1)")
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address: the dashboard can deploy, stop "
                "and destroy every agent, so serving it beyond this machine needs "
                "allow_remote = true (and then the token travels over plain HTTP: put TLS in "
                "front of it)")


#: The running servers, by hive (a process normally runs one hive; tests may run more).
_servers: dict[int, DashboardServer] = {}
#: Why a hive's dashboard is not serving (an address in use it was allowed to skip).
_problems: dict[int, str] = {}


@hookimpl
def config_schema() -> type:
    return DashboardConfig


@hookimpl
def startup(hive: Hive) -> None:
    from hivekit import HiveError

    from .server import AddressInUse, DashboardServer

    settings: DashboardConfig = hive.plugin_config("dashboard")
    server = DashboardServer(hive, settings)
    try:
        server.start()
    except AddressInUse as exc:
        # An operator who never configured the dashboard still gets a working hive (the
        # admin socket and CLI need no port); one who did asked for it, so the start fails.
        if "dashboard" in hive.config.tables:
            raise HiveError(exc.message) from None
        log.error("%s The hive runs without its dashboard.", exc.message)
        _problems[id(hive)] = exc.message
        return
    _servers[id(hive)] = server


@hookimpl
def shutdown(hive: Hive) -> None:
    _problems.pop(id(hive), None)
    server = _servers.pop(id(hive), None)
    if server is not None:
        server.stop()


@hookimpl
def state_extras(hive: Hive, agents: list[AgentView]) -> dict[str, Any]:
    """``dashboard``: where the page is served (``url``, without the token), or why it is not."""
    server = _servers.get(id(hive))
    if server is not None:
        return {"dashboard": {"url": server.url}}
    return {"dashboard": {"url": None, "error": _problems.get(id(hive), "not serving")}}


@hookimpl
def register_commands(cli: click.Group) -> None:
    import click

    from hivekit import HiveContext, fail

    @cli.command("dashboard")
    @click.option("--json", "as_json", is_flag=True, help='Print JSON: {"url"} (token included).')
    @click.pass_obj
    def dashboard(obj: HiveContext, as_json: bool) -> None:
        """Print the dashboard's URL with its access token (for a browser on this machine)."""
        from hivekit import HiveError

        try:
            state = obj.client().get("/api/state")
        except HiveError as exc:
            fail(str(exc))
        info = state.get("dashboard") if isinstance(state, dict) else None
        if not isinstance(info, dict):
            fail("the running hive has no dashboard (is it in [hive] disable?)")
        url = info.get("url")
        if not isinstance(url, str) or not url:
            fail(f"the dashboard is not serving: {info.get('error')}")
        config, loaded = obj.loaded()
        path = token_path(config.state_dir, loaded.plugin_configs["dashboard"])
        try:
            token = path.read_text().strip()
        except OSError as exc:
            fail(f"cannot read the dashboard's token at {path}: {exc.strerror} (run this as the "
                 "user the hive runs as)")
        if as_json:
            from hivekit import print_json

            print_json({"url": f"{url}?token={token}"})
        else:
            click.echo(f"{url}?token={token}")
