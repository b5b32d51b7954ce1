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
    UnexpectedAnswer,
    api_command,
    api_path,
    expect,
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
@click.argument("approval_id", metavar="ID", type=ID)
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
        click.echo(f"commit: {a['commit']} ({a['sha']})")
    if a["description"]:
        click.echo(f"description: {a['description']}")
    if a["note"]:
        click.echo(f"note: {a['note']}")
    if detail["diff"]:
        click.echo()
        click.echo(detail["diff"].rstrip("\n"))


@click.command()
@click.argument("approval_id", metavar="ID", type=ID)
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
@click.argument("approval_id", metavar="ID", type=ID)
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
@click.argument("name", type=AGENT_NAME)
@click.option("--description", default="", help="Why this agent.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@api_command
def request_spawn(client: Any, name: str, description: str, as_json: bool) -> None:
    """Request a new agent NAME (or bring a tombstone back)."""
    from hivekit import Approval

    a = expect(client.post("/api/requests/spawn", {"name": name, "description": description}),
               Approval)
    print_json(a) if as_json else click.echo(
        f"requested: #{a['id']} spawn {name} (`hivekit approve {a['id']}` to approve)")


@request.command("apply")
@click.argument("agent", type=AGENT_NAME)
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
    print_json(a) if as_json else click.echo(
        f"requested: #{a['id']} apply {agent} @ {_short(a['sha'])} "
        f"(`hivekit show {a['id']}` for the diff)")


def _lifecycle_command(verb: str, doc: str) -> click.Command:
    @click.command(verb, help=doc)
    @click.argument("name", type=AGENT_NAME)
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


@click.command()
@click.argument("name", type=AGENT_NAME)
@click.option("--purge", is_flag=True,
              help="Also delete its config history, notes and credentials (no undo).")
@api_command
def destroy(client: Any, name: str, purge: bool) -> None:
    """Destroy agent NAME's container; its state is kept as a tombstone unless --purge."""
    client.post(api_path("api", "agents", name, "destroy"), {"purge": purge})
    click.echo(f"{name}: destroyed" + (" and purged" if purge else
                                       " (state kept; --purge removes it)"))


@click.command()
@click.argument("to", type=AGENT_NAME)
@click.argument("body")
@api_command
def send(client: Any, to: str, body: str) -> None:
    """Send a message to agent TO as the operator."""
    from hivekit import Message

    m = expect(client.post("/api/messages", {"to": to, "body": body}), Message)
    click.echo(f"sent #{m['id']} to {to}")


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
@click.argument("name", type=AGENT_NAME)
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
@click.argument("question_id", metavar="ID", type=ID)
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


@hookimpl
def register_commands(cli: click.Group) -> None:
    for command in (agents, approvals, show, approve, wait, deny, request, destroy, send,
                    broadcast, inbox, questions, answer):
        cli.add_command(command)
    for verb, doc in (("start", "Start agent NAME."), ("stop", "Stop agent NAME."),
                      ("restart", "Restart agent NAME."),
                      ("rebuild", "Rebuild agent NAME from its deployed config.")):
        cli.add_command(_lifecycle_command(verb, doc))
