"""The meta flake's API routes (on the admin socket, and wherever else the app is served)."""

from __future__ import annotations

from typing import Any

from attrs import frozen
from litestar import Request, Response, get, post

from hivekit import BadRequest, Hive, HiveDep, query

MAX_LOG = 1000


async def _run(func: Any, *args: Any) -> Any:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(lambda: func(*args), abandon_on_cancel=True)


def meta_log(hive: Hive, limit: int) -> dict[str, Any]:
    from .meta import meta_for

    if not 0 < limit <= MAX_LOG:
        raise BadRequest(f"limit must be between 1 and {MAX_LOG}, got {limit}")
    meta = meta_for(hive)
    return {"path": str(meta.path), "pins": meta.pins(), "commits": meta.history(limit)}


def update_hive(hive: Hive) -> dict[str, Any]:
    """Relock the hivekit input, then rebuild exactly the agents built with an older one; each
    rebuilt agent's outcome, in order, and the agents that were up to date."""
    from hivekit import actions

    from .meta import meta_for

    return meta_for(hive).update_hive(lambda name, why: actions.rebuild(hive, name, why),
                                      "`hivekit meta update-hive`")


@frozen
class MetaLogQuery:
    #: How many commits, newest first (1 to MAX_LOG).
    limit: int = 50


@get("/api/meta/log", opt={"query": MetaLogQuery})
async def get_meta_log(hive: HiveDep, request: Request) -> Response:
    """The meta repo's commits, newest first, and every input's committed pin."""
    return Response(await _run(meta_log, hive, query(request).limit))


@post("/api/meta/update-hive", status_code=200)
async def post_update_hive(hive: HiveDep) -> Response:
    """Relock the hivekit input and rebuild the agents left behind (synchronously: may take
    long); 409 while another update runs."""
    return Response(await _run(update_hive, hive))


ROUTES = [get_meta_log, post_update_hive]
