"""The trust boundary, generated from the route tables: every malformed request is a 400 that
names what is wrong, logs no traceback and changes nothing.

The routes are read from the app objects themselves (the admin API's, served on the admin socket
and by the dashboard, and the agent socket's), with the body and query classes each route
declares in its ``opt``: a new route, field or query parameter is covered without editing this
file. For every route: each path id and name gets malformed values; each query parameter gets
text that is not its type, plus an unknown and a repeated parameter; each body field gets JSON
values of every wrong type (a string for a boolean, a boolean for an integer, a float for an
integer, null, a list, an object, integers past 2^63, deep nesting), plus bad JSON, unknown keys
and non-object bodies. Hypothesis then draws further wrong-typed values. One real daemon serves
the whole module; the state (approvals, questions, inboxes, tags, the agents' folders, the fake
backend's calls) is compared before and after each route's requests.
"""

from __future__ import annotations

import enum
import http.client
import json
import os
import shutil
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawhttp import UnixConnection
from type_rules import I64, fields, fits, is_optional, sample

from hivekit import config as cfg
from hivekit import plugins
from hivekit.testing import HiveProcess

# --- talking HTTP over a Unix socket or TCP, raw (bad JSON must reach the server as sent) -----


class Surface:
    """One server of an app: the admin socket, the dashboard (TCP + token), an agent socket."""

    def __init__(self, name: str, connect: Any, headers: dict[str, str] | None = None) -> None:
        self.name, self.connect, self.headers = name, connect, headers or {}

    def send(self, method: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
        conn = self.connect()
        try:
            headers = dict(self.headers)
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def get(self, target: str) -> Any:
        status, data = self.send("GET", target)
        assert status == 200, (target, status, data)
        return data


# --- the hive under test ---------------------------------------------------------------------


@attrs.define
class World:
    hive: HiveProcess
    admin: Surface
    dashboard: Surface
    agent: Surface
    approval_id: int
    question_id: int
    #: The daemon's apps, for their route tables: admin, dashboard, agent.
    apps: dict[str, Any]


class _RoutesOnly:
    """What ``create_app`` needs of a hive to list its routes: the plugins' hooks."""

    def __init__(self, pm: Any) -> None:
        self.hook = pm.hook
        self.each = lambda hook, **kwargs: plugins.each(pm, hook, **kwargs)


def _apps(config_path: Path) -> dict[str, Any]:
    """The daemon's apps, built from the same config (and so with the same plugins' routes)."""
    from hivekit_plugins.agent_api import server as agent_server
    from hivekit_plugins.dashboard.server import page_routes

    from hivekit.api import create_app

    loaded = plugins.load(cfg.read(config_path))
    stand_in = _RoutesOnly(loaded.pm)
    return {"admin": create_app(stand_in),  # type: ignore[arg-type]
            "dashboard": create_app(stand_in, extra=page_routes()),  # type: ignore[arg-type]
            "agent": agent_server.create_app(stand_in, 1024)}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="hkb", dir="/tmp"))
    hive = HiveProcess(root / "h")
    hive.start()
    try:
        hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                                  for a in hive.get("/api/state")["agents"]), what="manager")
        hive.spawn("coder")
        sha = hive.commit("coder", {"agent.conf": "x = 1\n"})
        approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
        hive.post("/api/messages", {"to": "coder", "body": "hello"})
        coder = Surface("coder", lambda: UnixConnection(
            hive.runtime_dir / "agents" / "coder" / "hive.sock"))
        status, question = coder.send("POST", "/ask", json.dumps(
            {"question": "ok?", "options": ["yes", "no"]}).encode())
        assert status == 201, question
        url = hive.get("/api/state")["dashboard"]["url"]
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        token = (hive.state_dir / "dashboard-token").read_text().strip()
        yield World(
            hive=hive,
            admin=Surface("admin", lambda: UnixConnection(hive.socket)),
            dashboard=Surface("dashboard", lambda: http.client.HTTPConnection(
                host, int(port), timeout=30), {"Authorization": f"Bearer {token}"}),
            agent=Surface("manager", lambda: UnixConnection(
                hive.runtime_dir / "agents" / "manager" / "hive.sock")),
            approval_id=approval["id"], question_id=question["id"],
            apps=_apps(hive.config_path))
    finally:
        hive.stop()
        shutil.rmtree(root, ignore_errors=True)


def snapshot(w: World) -> dict[str, Any]:
    """Everything a request could change: the store's records, every repo's refs, the agents'
    folders, the backend's calls."""
    admin = w.admin
    agents = [a["name"] for a in admin.get("/api/agents")]
    state: dict[str, Any] = {
        "agents": admin.get("/api/agents"),
        "approvals": admin.get("/api/approvals?all=true&limit=1000"),
        "questions": admin.get("/api/questions?all=true&target=any"),
        "inboxes": {n: admin.get(f"/api/agents/{n}/inbox?limit=1000")
                    for n in [*agents, "operator"]},
    }
    files: dict[str, Any] = {}
    for top in ("agents", "applied", "fake"):
        base = w.hive.state_dir / top
        for path in sorted(base.rglob("*")) if base.exists() else []:
            rel = str(path.relative_to(w.hive.state_dir))
            if path.is_file() and ("/refs/" in rel or rel.endswith(("packed-refs", "HEAD"))
                                   or top == "fake"):
                files[rel] = path.read_bytes()
            elif not path.is_file():
                files[rel] = "dir"
            else:
                files[rel] = path.stat().st_size
    state["files"] = files
    return state


# --- generating the cases from the route table -----------------------------------------------


@attrs.frozen
class Case:
    method: str
    target: str
    body: bytes | None
    #: What the refusal must mention (a field's name, or what is wrong with the body).
    names: str
    status: int = 400


#: JSON values of every kind, each wrong for the types it does not fit.
WRONG_JSON = ["false", "true", "5", "", 0, 1, 5, True, False, 0.5, 1.0, -1.5, None, [], ["x"],
              [1], [True], [None], {}, {"a": 1}, I64, -I64 - 1, 10**30]
#: Query-string text wrong for an integer, a number or a boolean.
WRONG_TEXT = {int: ["abc", "1.5", "", "٣", "1e3", " 1", "true", str(I64), "-" + str(I64 + 1)],
              float: ["abc", "", "nan", "inf", "1e400", "true", "1,5"],
              bool: ["1", "0", "yes", "True", "FALSE", ""]}
BAD_NAMES = ["UPPER", "..", "-x", "a" * 10, "ü", "a b", "a.b"]
BAD_IDS = ["abc", "0", "-1", "1.5", str(I64), "99999999999999999999999", "٣", "+1", "1e3", " 1"]


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def routes(app: Any) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """``(method, path template, path parameters, opt)`` of every route of ``app``."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                yield method, route.path, dict(route.path_parameters), handler.opt


def _fill(template: str, params: dict[str, Any], w: World, **bad: str) -> str:
    path = template
    for name, param in params.items():
        if name in bad:
            value = bad[name]
        elif name == "approval_id":
            value = str(w.approval_id)
        elif name == "question_id":
            value = str(w.question_id)
        elif name.endswith("_id"):
            value = "1"
        elif name == "name":
            value = "coder"
        else:
            value = "app.js"  # the dashboard's static files
        path = path.replace("{" + param.full + "}", quote(value, safe=""))
    return path


def cases(w: World, method: str, template: str, params: dict[str, Any],
          opt: dict[str, Any]) -> list[Case]:
    """Every malformed request this route must refuse."""
    found: list[Case] = []
    path = _fill(template, params, w)
    body_cls, query_cls = opt.get("body"), opt.get("query")
    base = {a.name: sample(a.type) for a in fields(body_cls)}
    ok_body = json.dumps(base).encode() if method != "GET" else None
    # Path parameters.
    for name in params:
        if name.endswith("_id"):
            found += [Case(method, _fill(template, params, w, **{name: v}), ok_body, name)
                      for v in BAD_IDS]
        elif name == "name":
            found += [Case(method, _fill(template, params, w, name=v), ok_body, "agent name")
                      for v in BAD_NAMES]
    # Query parameters.
    found.append(Case(method, f"{path}?bogus=1", ok_body, "bogus"))
    for att in fields(query_cls):
        kind = typing.get_args(att.type)[0] if is_optional(att.type) else att.type
        values = WRONG_TEXT.get(kind, [])
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            values = ["bogus", "", next(iter(kind)).value.upper()]
        found += [Case(method, f"{path}?{att.name}={quote(v)}", ok_body, att.name)
                  for v in values]
        found.append(Case(method, f"{path}?{att.name}=1&{att.name}=2", ok_body, att.name))
    if method == "GET":
        return found
    # The body as a whole.
    found += [
        Case(method, path, b'{"a": ', "not valid JSON"),
        Case(method, path, b"\xff\xfe", "UTF-8"),
        Case(method, path, b'{"a": NaN}', "NaN"),
        Case(method, path, b'{"a": 1, "a": 2}', "twice"),
        Case(method, path, json.dumps(_deep(200)).encode(), "deeper"),
        Case(method, path, b"[" * 100_000, "deeper"),
        Case(method, path, json.dumps({**base, "bogus": 1}).encode(), "bogus"),
    ]
    if body_cls is None:
        found.append(Case(method, path, b'{"bogus": 1}', "bogus"))
        return found
    found += [Case(method, path, json.dumps(v).encode(), "object") for v in ([], "x", 5, None)]
    # Every field, every wrong type.
    for att in fields(body_cls):
        for value in WRONG_JSON:
            if not fits(value, att.type):
                found.append(Case(method, path, json.dumps({**base, att.name: value}).encode(),
                                  att.name))
        found.append(Case(method, path, json.dumps({**base, att.name: _deep(50)}).encode(),
                          "deeper"))
        huge = json.dumps({**base, att.name: 0}).replace(f'"{att.name}": 0',
                                                        f'"{att.name}": 1e400')
        found.append(Case(method, path, huge.encode(), att.name))
        if att.default is attrs.NOTHING:
            missing = {k: v for k, v in base.items() if k != att.name}
            found.append(Case(method, path, json.dumps(missing).encode(), att.name))
    return found


def _check(w: World, surface: Surface, case: Case) -> str | None:
    status, data = surface.send(case.method, case.target, case.body)
    error = data.get("error", "") if isinstance(data, dict) else str(data)
    if status != case.status or case.names.lower() not in error.lower():
        return f"{case.method} {case.target} {case.body!r:.120}: {status} {error!r:.300}"
    return None


def run_route_cases(w: World, app_name: str, surface: Surface) -> int:
    """Every case of every route of the app on ``surface``; returns how many were sent."""
    sent = 0
    wrong: list[str] = []
    for method, template, params, opt in routes(w.apps[app_name]):
        before = snapshot(w)
        for case in cases(w, method, template, params, opt):
            problem = _check(w, surface, case)
            sent += 1
            if problem:
                wrong.append(problem)
        after = snapshot(w)
        assert before == after, f"{method} {template} changed the hive's state"
    assert not wrong, f"{len(wrong)} of {sent} requests were not refused as they should:\n" + \
        "\n".join(wrong[:40])
    log = w.hive.log()
    assert "Traceback" not in log and "internal error" not in log, log[-4000:]
    return sent


# --- the tests -----------------------------------------------------------------------------


def test_every_admin_route_refuses_malformed_requests(world: World) -> None:
    assert run_route_cases(world, "admin", world.admin) > 300


def test_every_agent_socket_route_refuses_malformed_requests(world: World) -> None:
    assert run_route_cases(world, "agent", world.agent) > 300


def test_the_dashboard_refuses_them_too(world: World) -> None:
    assert run_route_cases(world, "dashboard", world.dashboard) > 300


def test_the_route_tables_declare_what_they_take(world: World) -> None:
    # What the generated cases rely on: every POST route that reads a body says so in `opt`,
    # and the cases cover the reproduced examples of issue 12.
    admin = {(m, t): opt for m, t, _p, opt in routes(world.apps["admin"])}
    agent = {(m, t): opt for m, t, _p, opt in routes(world.apps["agent"])}
    assert admin[("POST", "/api/agents/{name:str}/destroy")]["body"].__name__ == "DestroyRequest"
    assert agent[("POST", "/ack")]["body"].__name__ == "AckBody"
    assert agent[("GET", "/recv")]["query"].__name__ == "RecvQuery"
    destroy = cases(world, "POST", "/api/agents/{name:str}/destroy",
                    {"name": _param("name")}, admin[("POST", "/api/agents/{name:str}/destroy")])
    assert any(c.body == b'{"purge": "false"}' for c in destroy)
    assert any(c.body == b'{"purge": 0.5}' for c in destroy)


def _param(name: str) -> Any:
    from litestar.types.internal_types import PathParameterDefinition

    return PathParameterDefinition(name=name, full=f"{name}:str", type=str, parser=None)


def test_the_reproduced_coercions_are_refused(world: World) -> None:
    """Issue 12's examples, one by one, with the exact message."""
    admin, agent = world.admin, world.agent
    status, data = admin.send("POST", "/api/agents/coder/destroy", b'{"purge": "false"}')
    assert (status, data["error"]) == (400, 'purge: expected a boolean, got the string "false"')
    status, data = admin.send("POST", f"/api/approvals/{world.approval_id}/deny",
                              b'{"note": 5}')
    assert (status, data["error"]) == (400, "note: expected a string, got the integer 5")
    status, data = agent.send("POST", "/ack", b'{"ids": "123"}')
    assert status == 400 and data["error"].startswith("ids: expected a list of integers")
    status, data = agent.send("POST", "/ask", b'{"question": "q", "multi": "false"}')
    assert status == 400 and "multi: expected a boolean" in data["error"]
    status, data = agent.send("POST", "/ask", b'{"question": "q", "options": "abc"}')
    assert status == 400 and "options: expected a list of strings" in data["error"]
    status, data = admin.send("GET", f"/api/approvals?limit={2**63}")
    assert status == 400 and "limit" in data["error"]
    status, data = admin.send("GET", f"/api/approvals/{2**63}")
    assert status == 400 and "approval_id" in data["error"]
    status, data = admin.send("GET", "/api/approvals/99999")
    assert status == 404  # a well-formed id that names nothing
    assert any(a["name"] == "coder" for a in admin.get("/api/agents"))


# --- property-based: wrong-typed values drawn by Hypothesis ---------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=I64, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)


def _bodyfields(app: Any) -> list[tuple[str, str, dict[str, Any], Any, attrs.Attribute]]:
    return [(m, t, p, opt["body"], att) for m, t, p, opt in routes(app) if opt.get("body")
            for att in fields(opt["body"])]


def test_wrong_typed_values_drawn_by_hypothesis_are_refused(world: World) -> None:
    targets = [("admin", *f) for f in _bodyfields(world.apps["admin"])] + \
        [("agent", *f) for f in _bodyfields(world.apps["agent"])]
    surfaces = {"admin": world.admin, "agent": world.agent}
    before = snapshot(world)

    @settings(max_examples=int(os.environ.get("HIVEKIT_BOUNDARY_EXAMPLES", "60")),
              deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(target=st.sampled_from(targets), value=_json_values)
    def refused(target: tuple[Any, ...], value: Any) -> None:
        app, method, template, params, cls, att = target
        if fits(value, att.type):
            return
        base = {a.name: sample(a.type) for a in fields(cls)}
        case = Case(method, _fill(template, params, world),
                    json.dumps({**base, att.name: value}).encode(), att.name)
        problem = _check(world, surfaces[app], case)
        assert problem is None, problem

    refused()
    assert snapshot(world) == before
    assert "Traceback" not in world.hive.log()
