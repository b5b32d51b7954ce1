"""``hivekit meta ...``: the meta flake's commands (they talk to the daemon's API)."""

from __future__ import annotations

import time
from typing import Any

import click

from hivekit import api_command, print_json


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


@click.group("meta")
def meta() -> None:
    """The meta flake: every agent pinned in one git-audited Nix flake."""


@meta.command("log")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="How many recent commits.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def meta_log(client: Any, limit: int, as_json: bool) -> None:
    """Show the deploy history: the meta repo's commits, newest first, and the current pins."""
    data = client.get("/api/meta/log", limit=limit)
    if as_json:
        print_json(data)
        return
    if not data["commits"]:
        click.echo(f"the meta flake at {data['path']} has no commits yet")
        return
    for c in data["commits"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c["time"]))
        click.echo(f"{c['sha'][:12]}  {when}  {c['subject']}")
    click.echo()
    click.echo("pinned:")
    for name, rev in data["pins"].items():
        click.echo(f"  {name}  {_short(rev)}")


@meta.command("update-hive")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def update_hive(client: Any, as_json: bool) -> None:
    """Relock the hivekit input, then rebuild exactly the agents built with an older one (the
    "needs update" badge): exit 1 if any rebuild failed."""
    if not as_json:
        click.echo("relocking the hivekit input and rebuilding the agents left behind...",
                   err=True)
    data = client.post("/api/meta/update-hive")
    failed = [a for a in data["agents"] if not a["ok"]]
    if as_json:
        print_json(data)
    else:
        h = data["hivekit"]
        moved = (f"{_short(h['before'])} -> {_short(h['after'])}" if h["committed"]
                 else f"unchanged at {_short(h['after'])}")
        click.echo(f"hivekit: {moved}")
        for a in data["agents"]:
            click.echo(f"{a['name']}: " + ("rebuilt" if a["ok"] else "FAILED"))
        if data["up_to_date"]:
            click.echo("up to date: " + ", ".join(data["up_to_date"]))
        for a in failed:
            click.echo(f"error: {a['name']}: {a['error']}", err=True)
    if failed:
        raise SystemExit(1)
