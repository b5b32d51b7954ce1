"""The dashboard's server: the API app (:func:`hivekit.api.create_app`) plus the page, behind a
token gate, on uvicorn in a thread of its own.

Access (every path, including unknown ones, goes through :class:`Gate`):

* ``?token=<token>`` on any URL authenticates that request and sets the session cookie
  (HttpOnly, SameSite=Strict). The page then removes the token from the address bar.
* A request with the session cookie is let in. A POST (any non-GET) also needs the CSRF token in
  the ``X-Hivekit-CSRF`` header: every authenticated response carries it in that header, which
  only this origin's scripts can read, and no other site can make a browser send a custom
  header. A POST with an ``Origin`` must also come from this server's origin.
* ``Authorization: Bearer <token>`` lets a script in, without cookie or CSRF token.

The cookie and CSRF values are HMACs of the token, so replacing the token file (and restarting)
logs every browser out. The cookie's name carries the port: browsers share cookies between the
ports of one host.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import logging
import os
import secrets
import socket
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl, urlencode

import uvicorn
from litestar import MediaType, Response, get

from hivekit import HiveError, PathStr, QuietServer, create_app

from . import DashboardConfig, is_loopback, token_path

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from hivekit import Hive

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("hivekit.dashboard")

#: Seconds open connections get to finish when the daemon stops (event streams end at once).
GRACEFUL_SECONDS = 2
#: How long a browser keeps the session (the token itself does not expire).
COOKIE_MAX_AGE = 30 * 24 * 3600
CSRF_HEADER = "x-hivekit-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Sent with every response: nothing but this server's own files may run or load.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]

#: The page's files, served from this package.
ASSETS = {
    "app.js": "text/javascript",
    "style.css": "text/css",
}


class AddressInUse(HiveError):
    """The dashboard's port is taken (by another hive's dashboard, or another program)."""


# --- the token ---------------------------------------------------------------------------------


def load_token(path: Path) -> str:
    """The access token in ``path``, created (random, mode 0600) when missing or empty.

    An existing file readable by others is tightened to 0600 (and said so in the log).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("dashboard token %s was readable by others (mode %o); set to 0600",
                        path, mode)
            os.chmod(path, 0o600)
        return token
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def given_token(path: Path) -> str:
    """The token in the operator's ``token_file``: never made or changed here.

    :raises HiveError: the file cannot be read, or holds no token (the dashboard must not run
        with one nobody was given).
    """
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise HiveError(f"[dashboard] token_file {path}: cannot read it ({exc.strerror}); give "
                        "the daemon the file (a systemd credential, a secret manager's file) or "
                        "remove the key to have a token made") from None
    if not token or any(c.isspace() or ord(c) < 32 for c in token):
        raise HiveError(f"[dashboard] token_file {path} holds no token (one line without "
                        "spaces is wanted)")
    return token


def derive(token: str, purpose: str) -> str:
    """A value only the token's holder can compute (cookie values are these, not the token)."""
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


# --- the gate ----------------------------------------------------------------------------------


class Gate:
    """ASGI middleware in front of the whole app: the token, the cookies, CSRF and the headers."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.token = token
        self.session = derive(token, "session")
        self.csrf = derive(token, "csrf")
        self.session_cookie = f"hivekit_session_{port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websockets here; lifespan is off
            return
        headers = _headers(scope)
        method = scope["method"]
        via_query = self._query_token(scope)
        if via_query is False:
            return await _deny(scope, send, 401, "wrong access token")
        bearer = self._bearer(headers)
        cookie = _cookies(headers).get(self.session_cookie, "")
        authed = bool(via_query) or bearer or _same(cookie, self.session)
        if not authed:
            return await _deny(scope, send, 401, "this dashboard needs its access token")
        if method not in SAFE_METHODS and not bearer:
            sent = headers.get(CSRF_HEADER, "")
            if not _same(sent, self.csrf):
                return await _deny(scope, send, 403, "missing or wrong CSRF token: reload the "
                                                     "dashboard and try again")
            origin = headers.get("origin")
            if origin is not None and origin != _own_origin(scope, headers):
                return await _deny(scope, send, 403, f"cross-origin request from {origin} "
                                                     "refused")
        extra = [(CSRF_HEADER.encode(), self.csrf.encode())]
        if via_query:
            extra.append(self._cookie_header())
            # The token is the gate's: the API behind it takes only its routes' own parameters.
            scope = {**scope, "query_string": _without_token(scope.get("query_string", b""))}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _query_token(self, scope: Scope) -> bool | None:
        """True: the query has the right token; False: a wrong one; None: none."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" not in query:
            return None
        return _same(query["token"][0], self.token)

    def _bearer(self, headers: dict[str, str]) -> bool:
        kind, _, value = headers.get("authorization", "").partition(" ")
        return kind.lower() == "bearer" and _same(value.strip(), self.token)

    def _cookie_header(self) -> tuple[bytes, bytes]:
        return (b"set-cookie", f"{self.session_cookie}={self.session}; Path=/; "
                               f"Max-Age={COOKIE_MAX_AGE}; SameSite=Strict; HttpOnly".encode())


def _without_token(query: bytes) -> bytes:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != "token"]).encode("latin-1")


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison that takes any text (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            found.setdefault(name, value)
    return found


def _own_origin(scope: Scope, headers: dict[str, str]) -> str:
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"


UNAUTHORIZED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hivekit: access token needed</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto; line-height: 1.5">
<h1>hivekit dashboard</h1>
<p>{reason}. Open the URL with <code>?token=…</code> that the hive printed when it started, or
run <code>hivekit dashboard</code> on the hive's machine to print it again.</p>
</body></html>
"""


async def _deny(scope: Scope, send: Send, status: int, reason: str) -> None:
    """A refusal: JSON for the API, a short page saying where the token is for a browser."""
    import json

    if scope["path"].startswith("/api/"):
        if status == 401:
            reason += " (`hivekit dashboard` prints the URL with it)"
        body = json.dumps({"error": reason}).encode()
        ctype = b"application/json"
    else:
        body = UNAUTHORIZED_PAGE.format(reason=reason.capitalize()).encode()
        ctype = b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


# --- the page ----------------------------------------------------------------------------------


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def page_routes() -> list[Any]:
    """The page's handlers; the files are read once, here."""
    index = _asset("index.html")
    files = {name: (_asset(name), ctype) for name, ctype in ASSETS.items()}

    @get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(content=index, media_type=MediaType.HTML)

    @get("/static/{file:str}", include_in_schema=False)
    async def static(file: PathStr) -> Response:
        if file not in files:
            return Response(content={"error": f"no file {file!r}"}, status_code=404)
        body, ctype = files[file]
        return Response(content=body, media_type=ctype)

    return [page, static]


# --- the server --------------------------------------------------------------------------------


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (SO_REUSEADDR, so a restart never waits out
    TIME_WAIT); :class:`AddressInUse` or a :class:`HiveError` saying what to change otherwise."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise HiveError(f"dashboard: cannot resolve [dashboard] host {host!r}: {exc.strerror}"
                        ) from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(
                f"dashboard: cannot listen on {where}: the address is already in use (another "
                "hive's dashboard, or another program). Choose another port with [dashboard] "
                "port = N in the config (0 = any free port), or turn the dashboard off with "
                '[hive] disable = ["dashboard"].') from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise HiveError(f"dashboard: cannot listen on {where}: not an address of this "
                            "machine; fix [dashboard] host") from None
        if exc.errno == errno.EACCES:
            raise HiveError(f"dashboard: cannot listen on {where}: permission denied (ports "
                            "below 1024 need privileges); choose another [dashboard] port"
                            ) from None
        raise HiveError(f"dashboard: cannot listen on {where}: {exc.strerror}") from None
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class DashboardServer:
    """The dashboard for one hive: bound and serving from :meth:`start` to :meth:`stop`."""

    def __init__(self, hive: Hive, settings: DashboardConfig) -> None:
        self.hive = hive
        self.settings = settings
        self.token_path = token_path(hive.paths.state_dir, settings)
        self.port = settings.port if settings.port is not None else hive.config.hive.dashboard_port
        self.url = ""
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (raising :class:`AddressInUse` and such before anything runs), then serve in a
        thread of its own with its own event loop. Logs the ready URL."""
        host = self.settings.host
        sock = bind_tcp(host, self.port)
        self.port = sock.getsockname()[1]
        token = (given_token(self.token_path) if self.settings.token_file
                 else load_token(self.token_path))
        app = create_app(self.hive, extra=page_routes())
        config = uvicorn.Config(Gate(app, token, self.port), lifespan="off", log_config=None,
                                log_level="warning", access_log=False,
                                timeout_graceful_shutdown=GRACEFUL_SECONDS)
        self._server = QuietServer(config)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="dashboard",
                                        daemon=True)
        self._thread.start()
        self.url = f"http://{_url_host(host)}:{self.port}/"
        if not is_loopback(host):
            log.warning("dashboard: serving on %s:%s, beyond this machine (allow_remote = true); "
                        "anyone who can reach it and has the token controls the hive, and plain "
                        "HTTP carries the token in the clear", host, self.port)
        log.info("dashboard: %s?token=%s", self.url, token)

    def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            asyncio.run(self._server.serve(sockets=[sock]))
        except BaseException:
            log.exception("dashboard: the server stopped with an error")
        finally:
            sock.close()

    def stop(self) -> None:
        """Stop serving; open event streams end when the hive's bus closes (the daemon closes it
        before ``shutdown``), others get :data:`GRACEFUL_SECONDS`."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_SECONDS + 5)
            if self._thread.is_alive():
                log.warning("dashboard: the server did not stop in time; leaving it behind")
