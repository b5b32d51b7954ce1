"""The operator's commands (bundled plugin ``cli``): thin wrappers over the admin API.

Every command talks to the running daemon over ``<runtime_dir>/admin.sock``. List commands take
``--json``. Commands that wait for a deploy (``approve``, ``rebuild``, ``start``...) show its steps
and the backend's output as they come (``--quiet`` hides them) and exit with the outcome: 0 when
it succeeded, 1 when it failed, so the exit code, the git tag and the dashboard always agree.
Ctrl-C stops only the following: the operation goes on in the hive, the command says how to
follow it again (``hivekit wait ID``) and exits 130.

Arguments are checked before any request is built: agent names by the agent-name rule, ids as
integers from 1 to 2^63-1 (click types ``hivekit.AGENT_NAME`` and ``hivekit.ID``: bad usage, exit 2,
with the rule). Every path segment is percent-encoded (``hivekit.api_path``) and query parameters
travel as parameters. An answer of an unexpected shape ends the command with a clear error,
never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from hivekit import (
    AGENT_NAME,
    ID,
    HiveContext,
    UnexpectedAnswer,
    api_command,
    api_path,
    expect,
    fail,
    hookimpl,
    print_json,
)

TERMINAL = ("approved", "denied", "failed")


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    secs = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit} ago"
    return f"{secs}s ago"


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _table(rows: list[list[str]], header: list[str]) -> None:
    if not rows:
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _approval_line(a: dict[str, Any]) -> str:
    what = a["agent"] if a["kind"] == "spawn" else f"{a['agent']} @ {_short(a['sha'])}"
    line = f"#{a['id']} {a['kind']} {what}: {a['status']}"
    if a.get("tag"):
        line += f" ({a['tag']})"
    return line


def _follow(client: Any, agent: str, quiet: bool, approval_id: int | None,
            call: Callable[[], Any], interrupted: Callable[[], str]) -> Any:
    """Run ``call`` while printing the agent's deploy steps and log lines; return its result.

    Ctrl-C stops following, not the work: ``interrupted()`` says what goes on in the hive and
    how to follow it again, and the command exits 130.
    """
    final: dict[str, Any] = {}

    def on_event(kind: str, data: Any) -> bool:
        if kind == "deploy_step" and data["agent"] == agent and not quiet:
            click.echo(f"-- {data['step']}", err=True)
        elif kind == "log" and data["agent"] == agent and not quiet:
            click.echo(f"   {data['line']}", err=True)
        elif (kind == "approval_changed" and data["approval"]["id"] == approval_id
              and data["approval"]["status"] in TERMINAL):
            final["approval"] = data["approval"]
            return True
        return False

    try:
        result = client.watch(
            call, on_event,
            finished=lambda r: approval_id is None or r.get("status") in TERMINAL)
    except KeyboardInterrupt:
        try:
            message = interrupted()
        except Exception:  # the hive cannot be asked now: say what is certain
            message = "interrupted; `hivekit approvals` and `hivekit agents` show where it is"
        click.echo(f"\n{message}", err=True)
        raise SystemExit(130) from None
    if approval_id is not None and isinstance(result, dict):
        if result.get("status") in TERMINAL:
            return result
        return final.get("approval", result)
    return result


# --- shell completion -------------------------------------------------------------------------
# `eval "$(_HIVEKIT_COMPLETE=bash_source hivekit)"` (zsh_source, fish_source): click completes the
# commands and options; these complete what the running hive knows. Without a daemon (or on any
# error) they offer nothing rather than print an error into the operator's prompt.


def _ask_hive(ctx: click.Context, path: str, **params: Any) -> Any:
    from hivekit import HiveError

    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, HiveContext) else HiveContext(
        root.params.get("config_path"))
    try:
        return obj.client().get(path, **params)
    except (HiveError, SystemExit, OSError):
        return None


def _items(pairs: list[tuple[str, str]], incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(value, help=about) for value, about in pairs
            if value.startswith(incomplete)]


def complete_agents(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Agent names (and tombstones, marked so) of the running hive."""
    state = _ask_hive(ctx, "/api/state") or {}
    pairs = [(a["name"], a.get("transient") or a["status"]) for a in state.get("agents", [])]
    pairs += [(t["name"], "tombstone") for t in state.get("tombstones", [])]
    return _items(pairs, incomplete)


def complete_recipients(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[Any]:
    """Agent names, and ``operator`` (whose inbox holds the agents' replies)."""
    return _items([("operator", "your inbox")], incomplete) + complete_agents(ctx, param,
                                                                              incomplete)


def complete_approvals(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Pending and running approval ids, with what each asks for."""
    rows = _ask_hive(ctx, "/api/approvals") or []
    return _items([(str(a["id"]), f"{a['kind']} {a['agent']}: {a['status']}") for a in rows],
                  incomplete)


def complete_questions(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    rows = _ask_hive(ctx, "/api/questions") or []
    return _items([(str(q["id"]), f"{q['asker']}: {q['question'][:60]}") for q in rows],
                  incomplete)


def complete_templates(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    found = _ask_hive(ctx, "/api/templates") or {}
    return _items(sorted(found.items()), incomplete)


def complete_keys(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """The credential keys of the agent named earlier on the command line."""
    name = (ctx.parent.params if ctx.parent else {}).get("name") or ""
    found = _ask_hive(ctx, api_path("api", "agents", name, "creds")) if name else None
    return _items([(k, "set") for k in (found or {}).get("keys", [])], incomplete)


def _approval_goes_on(client: Any, approval_id: int) -> str:
    """What Ctrl-C left of approval ``approval_id``, and how to follow it."""
    a = client.get(api_path("api", "approvals", approval_id))["approval"]
    if a["status"] == "pending":
        return f"interrupted before approving: approval #{approval_id} is still pending"
    if a["status"] in TERMINAL:
        return f"interrupted; meanwhile {_approval_line(a)}"
    return (f"interrupted: approval #{approval_id} goes on in the hive ({a['kind']} "
            f"{a['agent']}); follow it with `hivekit wait {approval_id}`")


def _operation_goes_on(client: Any, name: str, verb: str) -> str:
    """What Ctrl-C left of ``verb`` on agent ``name``, and how to follow it."""
    busy = client.get("/api/state")["transients"].get(name)
    if busy:
        return (f"interrupted: the {verb} of {name} goes on in the hive ({busy}); follow it "
                f"with `hivekit wait {name}`")
    return f"interrupted; {name} is not busy now (`hivekit agents` shows how it is)"


def _wait_approval(client: Any, approval_id: int, loud: bool) -> dict[str, Any]:
    """The approval once terminal, asking the hive's wait route as long as it takes."""
    if loud:  # the event stream is open: what happens from here on is shown
        a = client.get(api_path("api", "approvals", approval_id))["approval"]
        click.echo(f"following approval #{approval_id} ({a['kind']} {a['agent']}: "
                   f"{a['status']})", err=True)
    while True:
        a = client.get(api_path("api", "approvals", approval_id, "wait"))
        if a["status"] in TERMINAL:
            return a


def _ended(result: dict[str, Any], as_json: bool) -> None:
    """Print a resolved approval; exit 1 unless it was approved."""
    if as_json:
        print_json(result)
    else:
        click.echo(_approval_line(result))
    if result["status"] != "approved":
        if result.get("note") and not as_json:
            click.echo(f"error: {result['note']}", err=True)
        raise SystemExit(1)


# --- the commands -----------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def agents(client: Any, as_json: bool) -> None:
    """List the agents, their status, port and deployed commit (and tombstones)."""
    state = client.get("/api/state")

    def check() -> None:
        from hivekit import AgentView, Tombstone

        expect(state["agents"], list[AgentView])
        expect(state["tombstones"], list[Tombstone])

    if as_json:
        check()
        print_json(state["agents"])
        return
    # The table is made first and the answer's shape checked only if that fails: the check
    # builds the converter, several times what this command costs otherwise (the most used
    # command starts fast: bench/coldstart.py). A shape it cannot read still ends in the
    # precise error.
    try:
        rows = [[a["name"] + (" (manager)" if a["is_manager"] else ""),
                 a["transient"] or a["status"], str(a["port"]), _short(a["deployed_sha"]),
                 ", ".join(b["label"] for b in a["badges"])] for a in state["agents"]]
        # What the operator must act on, with the fix.
        errors = [f"{a['name']}: {b['label']}: {b['detail']}" for a in state["agents"]
                  for b in a["badges"] if b["level"] == "error"]
        stones = [f"tombstone: {t['name']} (destroyed; state kept at "
                  f"{_short(t['deployed_sha'])}; `hivekit request spawn {t['name']}` brings it "
                  "back)" for t in state["tombstones"]]
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        check()
        raise
    _table(rows, ["NAME", "STATUS", "PORT", "DEPLOYED", "BADGES"])
    if not rows:
        click.echo("no agents")
    for line in errors + stones:
        click.echo(line)


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include resolved approvals.")
@click.option("--status", type=click.Choice(["pending", "running", "approved", "denied",
                                             "failed"]), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def approvals(client: Any, show_all: bool, status: str | None, as_json: bool) -> None:
    """List pending approvals (with --all: every approval)."""
    from hivekit import Approval

    rows = expect(client.get("/api/approvals", status=status, all=show_all or None),
                  list[Approval])
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no approvals" + ("" if show_all else " pending"))
    _table([[f"#{a['id']}", a["kind"], a["agent"], a["status"], _short(a["sha"]),
             a["tag"] or "", _ago(a["created_at"]), a["description"][:40]] for a in rows],
           ["ID", "KIND", "AGENT", "STATUS", "SHA", "TAG", "CREATED", "DESCRIPTION"])


@click.command()
@click.argument("approval_id", metavar="ID", type=ID, shell_complete=complete_approvals)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def show(client: Any, approval_id: int, as_json: bool) -> None:
    """Show one approval with the diff it deploys."""
    from hivekit import ApprovalDetail

    detail = expect(client.get(api_path("api", "approvals", approval_id)), ApprovalDetail)
    if as_json:
        print_json(detail)
        return
    a = detail["approval"]
    click.echo(_approval_line(a))
    if a["commit"]:
        asked = f" (requested as {a['ref']})" if a.get("ref") and a["ref"] != a["commit"] else ""
        click.echo(f"commit: {a['commit']}{asked}")
    if a.get("template"):
        click.echo(f"template: {a['template']}")
    if a["description"]:
        click.echo(f"description: {a['description']}")
    if a["note"]:
        click.echo(f"note: {a['note']}")
    if detail["diff"]:
        click.echo()
        click.echo(detail["diff"].rstrip("\n"))


@click.command()
@click.argument("approval_id", metavar="ID", type=ID, shell_complete=complete_approvals)
@click.option("-q", "--quiet", is_flag=True, help="Don't show the deploy's progress.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved approval as JSON.")
@api_command
def approve(client: Any, approval_id: int, quiet: bool, as_json: bool) -> None:
    """Approve an approval and wait for its deploy: exit 0 deployed, 1 failed."""
    from hivekit import Approval, ApprovalDetail

    current = expect(client.get(api_path("api", "approvals", approval_id)),
                     ApprovalDetail)["approval"]
    result = expect(_follow(client, current["agent"], quiet or as_json, current["id"],
                            lambda: client.post(api_path("api", "approvals", approval_id,
                                                         "approve")),
                            lambda: _approval_goes_on(client, approval_id)), Approval)
    _ended(result, as_json)


class IdOrName(click.ParamType):
    """An approval's id (digits) or an agent's name, each checked by its own rule."""

    name = "ID|NAME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return ID.convert(value, param, ctx)
        return AGENT_NAME.convert(value, param, ctx)


@click.command()
@click.argument("target", metavar="ID|NAME", type=IdOrName())
@click.option("-q", "--quiet", is_flag=True, help="Don't show the progress.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@api_command
def wait(client: Any, target: int | str, quiet: bool, as_json: bool) -> None:
    """Follow approval ID (or agent NAME's running operation) until it ends.

    For an approval: shows its deploy steps and the backend's output, as `approve` does, and
    exits 0 when it was approved (deployed), 1 when it failed or was denied; a pending one is
    waited for until someone approves or denies it. For an agent: follows whatever operation
    runs on it (a deploy, rebuild, start...) and exits 0 once none does.
    """
    from hivekit import AgentView, Approval, ApprovalDetail

    loud = not (quiet or as_json)
    if isinstance(target, int):
        current = expect(client.get(api_path("api", "approvals", target)),
                         ApprovalDetail)["approval"]
        if current["status"] not in TERMINAL:
            if current["status"] == "pending" and loud:
                click.echo(f"approval #{target} is pending: waiting for it to be approved or "
                           "denied", err=True)
            current = expect(_follow(
                client, current["agent"], not loud, target,
                lambda: _wait_approval(client, target, loud),
                lambda: f"stopped waiting; `hivekit wait {target}` follows it again"), Approval)
        _ended(current, as_json)
        return

    def wait_agent() -> Any:
        if loud:
            busy = client.get("/api/state")["transients"].get(target)
            click.echo(f"following {target}" + (f" ({busy})" if busy else ": no operation "
                                                "runs on it"), err=True)
        return client.get(api_path("api", "agents", target, "wait"))

    view = expect(_follow(client, target, not loud, None, wait_agent,
                          lambda: f"stopped waiting; `hivekit wait {target}` follows it again"),
                  AgentView)
    if as_json:
        print_json(view)
    else:
        click.echo(f"{target}: {view['status']}")


@click.command()
@click.argument("approval_id", metavar="ID", type=ID, shell_complete=complete_approvals)
@click.option("--note", default="", help="Why (recorded in the denied/<id> tag and told to the "
                                         "manager).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def deny(client: Any, approval_id: int, note: str, as_json: bool) -> None:
    """Deny a pending approval."""
    from hivekit import Approval

    result = expect(client.post(api_path("api", "approvals", approval_id, "deny"),
                                {"note": note}), Approval)
    print_json(result) if as_json else click.echo(_approval_line(result))


@click.group()
def request() -> None:
    """Request a spawn or an apply (what the manager does; the operator then approves)."""


@request.command("spawn")
@click.argument("name", type=AGENT_NAME, shell_complete=complete_agents)
@click.option("--description", default="", help="Why this agent.")
@click.option("--template", metavar="NAME", shell_complete=complete_templates,
              help="Seed its config from this template (`hivekit templates` lists them; e.g. "
                   "claude: Claude Code with the hive's MCP tools).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def request_spawn(client: Any, name: str, description: str, template: str | None,
                  as_json: bool) -> None:
    """Request a new agent NAME (or bring a tombstone back)."""
    from hivekit import Approval

    a = expect(client.post("/api/requests/spawn", {"name": name, "description": description,
                                                   "template": template}), Approval)
    seeded = f" from template {template}" if template else ""
    print_json(a) if as_json else click.echo(
        f"requested: #{a['id']} spawn {name}{seeded} (`hivekit approve {a['id']}` to approve)")


@request.command("apply")
@click.argument("agent", type=AGENT_NAME, shell_complete=complete_agents)
@click.argument("commit")
@click.option("--description", default="", help="What the change does.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def request_apply(client: Any, agent: str, commit: str, description: str, as_json: bool) -> None:
    """Request deploying COMMIT of AGENT's proposed repo."""
    from hivekit import Approval

    a = expect(client.post("/api/requests/apply",
                           {"agent": agent, "commit": commit, "description": description}),
               Approval)
    asked = f" ({commit})" if commit != a["sha"] else ""
    print_json(a) if as_json else click.echo(
        f"requested: #{a['id']} apply {agent} @ {_short(a['sha'])}{asked} "
        f"(`hivekit show {a['id']}` for the diff)")


def _lifecycle_command(verb: str, doc: str) -> click.Command:
    @click.command(verb, help=doc)
    @click.argument("name", type=AGENT_NAME, shell_complete=complete_agents)
    @click.option("-q", "--quiet", is_flag=True, help="Don't show the backend's output.")
    @click.option("--json", "as_json", is_flag=True, help="Print the agent as JSON.")
    @api_command
    def command(client: Any, name: str, quiet: bool, as_json: bool) -> None:
        from hivekit import AgentView

        view = expect(_follow(client, name, quiet or as_json, None,
                              lambda: client.post(api_path("api", "agents", name, verb)),
                              lambda: _operation_goes_on(client, name, verb)),
                      AgentView)
        if as_json:
            print_json(view)
        else:
            click.echo(f"{name}: {view['status']}")

    return command


PURGE_WARNING = ("Purge {name}? This deletes everything the hive keeps for it: its config "
                 "history (the proposed and applied repos, with every tag), its credentials "
                 "and its notes. There is no undo.")


@click.command()
@click.argument("name", type=AGENT_NAME, shell_complete=complete_agents)
@click.option("--purge", is_flag=True,
              help="Also delete its config history, notes and credentials (no undo; asks "
                   "first).")
@click.option("-y", "--yes", is_flag=True,
              help="Purge without asking (needed for --purge without a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def destroy(client: Any, name: str, purge: bool, yes: bool, as_json: bool) -> None:
    """Destroy agent NAME's container; its state is kept as a tombstone unless --purge."""
    import sys

    if purge and not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to purge {name} without confirmation: it deletes its config "
                 "history, credentials and notes for good; pass --yes to purge anyway", 2)
        if not click.confirm(PURGE_WARNING.format(name=name), default=False, err=True):
            fail(f"not purged: {name} is unchanged")
    result = client.post(api_path("api", "agents", name, "destroy"), {"purge": purge})
    if as_json:
        print_json(result)
        return
    click.echo(f"{name}: destroyed" + (" and purged" if purge else
                                       " (state kept; --purge removes it)"))


@click.command()
@click.argument("to", type=AGENT_NAME, shell_complete=complete_agents)
@click.argument("body")
@click.option("--json", "as_json", is_flag=True, help="Print the sent message as JSON.")
@api_command
def send(client: Any, to: str, body: str, as_json: bool) -> None:
    """Send a message to agent TO as the operator."""
    from hivekit import Message

    m = expect(client.post("/api/messages", {"to": to, "body": body}), Message)
    print_json(m) if as_json else click.echo(f"sent #{m['id']} to {to}")


@click.command()
@click.argument("message_ids", metavar="[ID]...", nargs=-1, type=ID)
@click.option("--all", "everything", is_flag=True, help="Every message of your inbox.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def ack(client: Any, message_ids: tuple[int, ...], everything: bool, as_json: bool) -> None:
    """Mark messages of your inbox (`hivekit inbox operator`) read: their IDs, or --all."""
    if not message_ids and not everything:
        fail("name the messages to mark read (their ids, from `hivekit inbox operator`), or "
             "pass --all", 2)
    from attrs import frozen  # here, not at the top: `hivekit agents` does without attrs

    @frozen
    class Acked:
        """``POST /api/agents/operator/inbox/ack``'s answer."""

        acked: int

    got = expect(client.post(api_path("api", "agents", "operator", "inbox", "ack"),
                             {"ids": list(message_ids), "all": everything}), Acked)
    print_json(got) if as_json else click.echo(f"marked {got['acked']} message(s) read")


@click.command()
@click.argument("body")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def broadcast(client: Any, body: str, as_json: bool) -> None:
    """Send BODY to every agent, the manager included, with the broadcast hint ([hive]
    broadcast_hint): exit 1 if a delivery failed."""
    data = client.post("/api/broadcast", {"body": body})
    if not isinstance(data, dict) or not isinstance(data.get("sent"), dict) or \
            not isinstance(data.get("failed"), dict):
        raise UnexpectedAnswer("a broadcast's answer is {sent: {...}, failed: {...}}")
    if as_json:
        print_json(data)
    else:
        sent = ", ".join(f"{name} (#{mid})" for name, mid in data["sent"].items()) or "nobody"
        click.echo(f"sent to {len(data['sent'])} agent(s): {sent}")
        for name, why in data["failed"].items():
            click.echo(f"error: {name}: {why}", err=True)
    if data["failed"]:
        raise SystemExit(1)


@click.command()
@click.argument("name", type=AGENT_NAME, shell_complete=complete_recipients)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="How many recent messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def inbox(client: Any, name: str, limit: int, as_json: bool) -> None:
    """Show agent NAME's recent inbox (``operator``: what agents wrote to you)."""
    from hivekit import Message

    messages = expect(client.get(api_path("api", "agents", name, "inbox"), limit=limit),
                      list[Message])
    if as_json:
        print_json(messages)
        return
    if not messages:
        click.echo(f"{name}'s inbox is empty")
    for m in messages:
        mark = " " if m["acked_at"] else "*"
        click.echo(f"{mark} #{m['id']} {_ago(m['created_at'])} from {m['sender']}: {m['body']}")
    if name == "operator" and any(not m["acked_at"] for m in messages):
        click.echo("(* = unread; `hivekit ack ID...` or `hivekit ack --all` marks them read)")


def _question_line(q: dict[str, Any]) -> str:
    asked = "" if q["target"] == "operator" else f" (asked of {q['target']})"
    line = f"#{q['id']} from {q['asker']}{asked}, {_ago(q['created_at'])}: {q['question']}"
    if q["options"]:
        kind = "choose one or more, comma-separated" if q["multi"] else "choose one"
        line += f"\n    options ({kind}): " + " | ".join(q["options"])
    if q["status"] == "pending" and q["deadline"]:
        left = max(0, int(q["deadline"] - time.time()))
        line += f"\n    expires in {left}s"
    elif q["status"] != "pending":
        by = f" by {q['answered_by']}" if q["answered_by"] else ""
        line += f"\n    {q['status']}{by}" + (f": {q['answer']}" if q["answer"] else "")
    return line


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include answered, cancelled and expired "
                                                      "questions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def questions(client: Any, show_all: bool, as_json: bool) -> None:
    """List the agents' questions to the operator (pending ones unless --all)."""
    from hivekit import Question

    rows = expect(client.get("/api/questions", all=show_all or None), list[Question])
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no questions" + ("" if show_all else " pending"))
    for q in rows:
        click.echo(_question_line(q))


@click.command()
@click.argument("question_id", metavar="ID", type=ID, shell_complete=complete_questions)
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print the answered question as JSON.")
@api_command
def answer(client: Any, question_id: int, text: str, as_json: bool) -> None:
    """Answer question ID with TEXT (as the operator).

    For a question with options, TEXT must be one of them (case does not matter); for a
    multi-select question, one or more of them separated by commas ("red, blue").
    """
    from hivekit import Question

    q = expect(client.post(api_path("api", "questions", question_id, "answer"),
                           {"answer": text}), Question)
    if as_json:
        print_json(q)
    else:
        click.echo(f"answered #{q['id']} ({q['asker']} asked): {q['answer']}")


# --- credentials, exec, logs, templates --------------------------------------------------------


@click.group("creds")
@click.argument("name", type=AGENT_NAME, shell_complete=complete_agents)
@click.pass_context
def creds(ctx: click.Context, name: str) -> None:
    """Agent NAME's credentials: `set KEY`, `list`, `rm KEY`.

    A key reaches the agent as an environment variable of that name from its next start
    (`hivekit restart NAME`). Values are read from stdin (or --from-file), never from the
    command line, and are never printed or logged; they live in the agent's creds dir (0600
    files in a 0700 dir), kept across destroy.
    """
    ctx.meta["creds_agent"] = name


def _creds_agent() -> str:
    return click.get_current_context().meta["creds_agent"]


def _read_value(key: str, from_file: str | None) -> str:
    import sys

    if from_file is not None:
        try:
            with open(from_file, "rb") as f:
                raw = f.read()
        except OSError as exc:
            fail(f"cannot read {from_file}: {exc.strerror}")
        value = raw.decode(errors="replace")
    elif sys.stdin.isatty():
        value = click.prompt(f"value of {key} (not shown)", hide_input=True, err=True)
    else:
        value = sys.stdin.read()
    # A value piped or saved by an editor ends with a newline that is not part of it.
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        fail(f"no value for {key}: pipe it on stdin (`... | hivekit creds NAME set {key}`) or "
             "give --from-file FILE", 2)
    return value


@creds.command("set")
@click.argument("key")
@click.option("--from-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Read the value from FILE instead of stdin.")
@click.option("--json", "as_json", is_flag=True, help="Print what the agent now has as JSON.")
@api_command
def creds_set(client: Any, key: str, from_file: str | None, as_json: bool) -> None:
    """Store credential KEY (its value from stdin, a hidden prompt, or --from-file)."""
    from hivekit import HiveError, creds

    name = _creds_agent()
    try:
        creds.check_key(key)  # before reading a secret that would be refused anyway
    except HiveError as exc:
        fail(str(exc), 2)
    got = expect(client.post(api_path("api", "agents", name, "creds", key),
                             {"value": _read_value(key, from_file)}), creds.Listing)
    if as_json:
        print_json(got)
        return
    click.echo(f"{name}: {key} set (keys: {', '.join(got['keys'])}); it reaches the agent at "
               f"its next start: `hivekit restart {name}`")


@creds.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def creds_list(client: Any, as_json: bool) -> None:
    """List the credential keys and login files (names only, never values)."""
    from hivekit import creds

    name = _creds_agent()
    got = expect(client.get(api_path("api", "agents", name, "creds")), creds.Listing)
    if as_json:
        print_json(got)
        return
    if not got["keys"] and not got["files"]:
        click.echo(f"{name} has no credentials (`hivekit creds {name} set KEY`, or "
                   f"`hivekit exec {name} -- claude login`)")
    for key in got["keys"]:
        click.echo(f"key   {key}")
    for rel in got["files"]:
        click.echo(f"file  {rel}")


@creds.command("rm")
@click.argument("key", shell_complete=complete_keys)
@click.option("--json", "as_json", is_flag=True, help="Print what the agent now has as JSON.")
@api_command
def creds_rm(client: Any, key: str, as_json: bool) -> None:
    """Remove credential KEY."""
    from hivekit import creds

    name = _creds_agent()
    got = expect(client.request("DELETE", api_path("api", "agents", name, "creds", key)),
                 creds.Listing)
    print_json(got) if as_json else click.echo(
        f"{name}: {key} removed (keys left: {', '.join(got['keys']) or 'none'})")


@click.command("exec", context_settings={"ignore_unknown_options": True,
                                         "allow_interspersed_args": False})
@click.argument("name", type=AGENT_NAME, shell_complete=complete_agents)
@click.argument("argv", metavar="-- CMD [ARG]...", nargs=-1, required=True,
                type=click.UNPROCESSED)
@api_command
def exec_command(client: Any, name: str, argv: tuple[str, ...]) -> None:
    """Run CMD inside agent NAME's sandbox or container, with its credentials there.

    For an interactive login (`hivekit exec coder -- claude login`: whatever it saves in the
    agent's HOME, its creds dir, stays there) or to look around as the agent sees things. Runs
    on the hive's machine as your own process, with your terminal; its exit code is this
    command's.
    """
    import os
    import sys

    args = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not args:
        fail("nothing to run: hivekit exec NAME -- CMD [ARG]...", 2)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    from hivekit import ExecPlan

    plan = expect(client.post(api_path("api", "agents", name, "exec"),
                              {"argv": args, "tty": tty}), ExecPlan)
    env = dict(plan["env"])
    if tty and "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    try:
        if plan.get("cwd"):
            os.chdir(plan["cwd"])
        # Replaces this process: the command gets the terminal, the signals and the exit code.
        os.execvpe(plan["argv"][0], plan["argv"], env)
    except OSError as exc:
        fail(f"cannot run {plan['argv'][0]!r}: {exc.strerror}")


@click.command("logs")
@click.argument("name", type=AGENT_NAME, shell_complete=complete_agents)
@click.option("-n", "--lines", default=100, show_default=True, type=click.IntRange(0, 10_000),
              help="How many recent lines to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (with --follow: one JSON string per line).")
@api_command
def logs(client: Any, name: str, lines: int, follow: bool, as_json: bool) -> None:
    """Show agent NAME's own output (what its program prints), from its backend."""
    import json
    import sys

    from hivekit import AgentLog

    path = api_path("api", "agents", name, "logs")
    if not follow:
        got = expect(client.get(path, lines=lines), AgentLog)
        if as_json:
            print_json(got)
        else:
            for line in got["lines"]:
                click.echo(line)
        return
    try:
        for line in client.lines(path, lines=lines, follow="true"):
            click.echo(json.dumps(line) if as_json else line)
    except KeyboardInterrupt:
        sys.exit(130)


@click.command("templates")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def templates(client: Any, as_json: bool) -> None:
    """List the templates a spawn can seed a new agent from (`request spawn --template`)."""
    found = expect(client.get("/api/templates"), dict[str, str])
    if as_json:
        print_json(found)
        return
    if not found:
        click.echo("no templates (the backend seeds every agent with its default)")
    for name, about in sorted(found.items()):
        click.echo(f"{name}: {about}")


@hookimpl
def register_commands(cli: click.Group) -> None:
    for command in (agents, approvals, show, approve, wait, deny, request, destroy, send,
                    broadcast, ack, inbox, questions, answer, creds, exec_command, logs,
                    templates):
        cli.add_command(command)
    for verb, doc in (("start", "Start agent NAME."), ("stop", "Stop agent NAME."),
                      ("restart", "Restart agent NAME."),
                      ("rebuild", "Rebuild agent NAME from its deployed config.")):
        cli.add_command(_lifecycle_command(verb, doc))
