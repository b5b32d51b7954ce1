"""The dashboard page in a real browser: Debian's headless Chromium driven by Playwright, against
a real ``hivekit serve`` on the fake backend. Screenshots of the main views go to ``artifacts/``.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api as playwright  # the test extra installs it (never a browser)

from hivekit.testing import HiveProcess, control
from hivekit.testing.fake import report

expect = playwright.expect
expect.set_options(timeout=20_000)

CHROMIUM = "/usr/bin/chromium"
# No sandbox: tests run as root in a container. The rest keeps Chromium off the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/setup test installs it"
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    yield ctx
    ctx.close()


def url_and_token(hive: HiveProcess) -> tuple[str, str]:
    url = hive.get("/api/state")["dashboard"]["url"]
    return url, (hive.state_dir / "dashboard-token").read_text().strip()


def open_page(context: Any, hive: HiveProcess) -> Any:
    """A tab on the dashboard, logged in and live; page errors and JS dialogs are recorded."""
    url, token = url_and_token(hive)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda exc: page.problems.append(f"page error: {exc}"))
    page.on("dialog", lambda d: (page.problems.append(f"js dialog: {d.message}"), d.dismiss()))
    resp = page.goto(f"{url}?token={token}")
    assert resp.status == 200
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(agent(page, "manager").locator(".status")).to_have_text("running")
    return page


def agent(page: Any, name: str) -> Any:
    return page.locator(f'#agents [data-agent="{name}"]')


def pending(page: Any, approval_id: int) -> Any:
    return page.locator(f'#approvals [data-approval="{approval_id}"]')


def resolved(page: Any, approval_id: int) -> Any:
    return page.locator(f'#resolved [data-approval="{approval_id}"]')


def shot(page: Any, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=full_page)


def count_snapshots(page: Any) -> list[str]:
    """The ``/api/state`` requests ``page`` makes from now on (a list that grows)."""
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url) if "/api/state" in req.url else None)
    return seen


def no_problems(page: Any) -> None:
    assert page.problems == []
    assert page.evaluate("window.__pwned") is None


def tag_message(hive: HiveProcess, agent_name: str, tag: str) -> str:
    repo = hive.state_dir / "applied" / agent_name
    return subprocess.run(["git", "-C", str(repo), "for-each-ref", f"refs/tags/{tag}",
                           "--format=%(contents)"], capture_output=True, text=True,
                          check=True).stdout.strip()


# --- the tests ---------------------------------------------------------------------------------


def test_the_page_refuses_a_request_without_the_token_and_loads_with_it(context, hive):
    url, token = url_and_token(hive)
    page = context.new_page()
    refused = page.goto(url)
    assert refused.status == 401
    expect(page.locator("body")).to_contain_text("access token")
    assert page.goto(f"{url}?token=wrong").status == 401
    loaded = page.goto(f"{url}?token={token}")
    assert loaded.status == 200
    expect(agent(page, "manager").locator(".status")).to_have_text("running")
    expect(page).not_to_have_url(re.compile("token"))  # dropped from the address bar
    assert page.goto(url).status == 200  # the cookie stands in for the token from now on
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def test_a_spawn_request_appears_live_and_its_approval_shows_spawning_then_running(
        context, hive):
    page = open_page(context, hive)
    snapshots = count_snapshots(page)
    control(hive.state_dir, delay={"coder": 4})
    approval = hive.post("/api/requests/spawn", {"name": "coder",
                                                  "description": "writes the code"})
    card = pending(page, approval["id"])
    expect(card).to_contain_text("writes the code")  # no reload: the event brought it
    expect(card.locator(".kind")).to_have_text("spawn")
    shot(page, "spawn-request")
    card.get_by_role("button", name="Approve", exact=True).click()
    pill = agent(page, "coder").locator(".pill")
    expect(pill).to_have_text(re.compile("spawning"))
    expect(agent(page, "coder").get_by_role("button", name="stop", exact=True)).to_be_hidden()
    shot(page, "spawning")
    expect(agent(page, "coder").locator(".status")).to_have_text("running")
    expect(pill).to_be_hidden()
    expect(agent(page, "coder").get_by_role("button", name="stop", exact=True)).to_be_enabled()
    expect(agent(page, "coder").locator(".badge")).to_have_text("needs login")
    expect(resolved(page, approval["id"]).locator(".outcome")).to_have_text("approved")
    expect(resolved(page, approval["id"]).locator(".tag")).to_have_text("deployed/0")
    expect(card).to_be_hidden()
    # Its approval, its transient and its new row all came as events: the page applied them
    # without fetching the snapshot again (only a seq gap or a new daemon does).
    assert snapshots == []
    no_problems(page)


def test_a_huge_diff_shows_the_truncation_marker(context, hive):
    hive.spawn("coder")
    big = "x" * 99 + "\n"
    sha = hive.commit("coder", {"big.txt": big * (20 * 1024 * 1024 // len(big))}, "20 MiB")
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    page = open_page(context, hive)
    marker = pending(page, approval["id"]).locator("pre.diff .truncated")
    expect(marker).to_contain_text("diff truncated: ")
    expect(marker).to_contain_text(f"`git diff main..proposal/{approval['id']}` in the applied "
                                   "repo shows it all")
    assert pending(page, approval["id"]).locator("pre.diff span").count() < 20_000
    no_problems(page)


def test_a_deny_with_a_reason_shows_the_note_and_the_tag(context, hive):
    hive.spawn("coder")
    sha = hive.commit("coder", {"agent.conf": "model = 'large'\n"}, "bigger model")
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha,
                                                  "description": "use the large model"})
    page = open_page(context, hive)
    card = pending(page, approval["id"])
    expect(card.locator("pre.diff .add")).to_have_text(["+model = 'large'"])
    expect(card.locator(".sha")).to_have_text(f"@ {sha[:12]}")
    shot(page, "pending-apply")
    card.get_by_role("button", name="Deny", exact=True).click()
    dialog = page.locator("#dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"denied/{approval['id']}")
    note = "too expensive <script>window.__pwned = 1</script> — keep 'small'"
    page.fill("#dialog-input", note)
    shot(page, "deny-reason", full_page=False)
    page.click("#dialog-ok")
    item = resolved(page, approval["id"])
    expect(item.locator(".outcome")).to_have_text("denied")
    expect(item.locator(".tag")).to_have_text(f"denied/{approval['id']}")
    expect(item.locator(".note")).to_have_text(note)  # the <script> shows as text
    assert item.locator("script").count() == 0
    assert tag_message(hive, "coder", f"denied/{approval['id']}") == note
    shot(page, "denied")
    no_problems(page)


def test_a_failing_apply_shows_failed_with_the_build_error_in_full(context, hive):
    hive.spawn("coder")
    error = ("error: builder for '/nix/store/8f0x-nixos-system-coder.drv' failed with exit "
             "code 1;\n       last 3 log lines:\n       > error: attribute 'foo' missing\n"
             "       >   at /nix/store/abc-source/flake.nix:12:5:\n"
             "       >       11|   services.coder = {\n"
             "       >       12|     foo = bar;\n"
             "       For full logs, run 'nix log /nix/store/8f0x-nixos-system-coder.drv'.")
    sha = hive.commit("coder", {"FAIL": error}, "break the build")
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    page = open_page(context, hive)
    pending(page, approval["id"]).get_by_role("button", name="Approve", exact=True).click()
    item = resolved(page, approval["id"])
    expect(item.locator(".outcome")).to_have_text("failed")
    expect(item.locator(".tag")).to_have_text(f"failed/{approval['id']}")
    assert item.locator(".note").text_content() == error
    expect(page.locator("#log")).to_contain_text(f"approval #{approval['id']}: build")
    expect(agent(page, "coder").locator(".pill")).to_be_hidden()
    item.get_by_role("button", name="show diff", exact=True).click()
    expect(item.locator("pre.diff")).to_contain_text("+++ b/FAIL")
    shot(page, "failed")
    no_problems(page)


def test_a_deploy_shows_verifying_until_the_agent_proves_healthy_or_is_rolled_back(context,
                                                                                     hive):
    """After the build, the row's pill says ``verifying…`` while the health checks run (here:
    one that hangs until the test lets it answer); a healthy agent ends ``approved`` and the
    pill goes; an unhealthy one ends ``failed`` with the rollback in its note."""
    hive.spawn("coder")
    first = hive.post("/api/requests/apply", {
        "agent": "coder", "commit": hive.commit("coder", {"notes.txt": "one\n"}, "one")})
    page = open_page(context, hive)
    control(hive.state_dir, health_hang=["coder"])
    pending(page, first["id"]).get_by_role("button", name="Approve", exact=True).click()
    pill = agent(page, "coder").locator(".pill")
    expect(pill).to_have_text("◐ verifying…")
    expect(page.locator("#log")).to_contain_text(f"approval #{first['id']}: verify")
    expect(agent(page, "coder").get_by_role("button", name="stop", exact=True)).to_be_disabled()
    shot(page, "verifying")
    control(hive.state_dir)  # the check answers: healthy
    expect(resolved(page, first["id"]).locator(".outcome")).to_have_text("approved")
    expect(pill).to_be_hidden()
    expect(agent(page, "coder").locator(".status")).to_have_text("running")

    control(hive.state_dir, unhealthy={"coder": "port 8080 refused"})
    second = hive.post("/api/requests/apply", {
        "agent": "coder", "commit": hive.commit("coder", {"notes.txt": "two\n"}, "two")})
    pending(page, second["id"]).get_by_role("button", name="Approve", exact=True).click()
    item = resolved(page, second["id"])
    expect(item.locator(".outcome")).to_have_text("failed")
    expect(item.locator(".tag")).to_have_text(f"failed/{second['id']}")
    expect(item.locator(".note")).to_contain_text(
        "deployed, then rolled back: fake: port 8080 refused")
    expect(pill).to_be_hidden()
    control(hive.state_dir)
    no_problems(page)


def test_strings_from_agents_render_as_text(context, make_hive):
    hive = make_hive('[hive]\nbackend = "fake"\nenable = ["example"]\n\n'
                     '[example]\ngreeting = "<img src=x onerror=window.__pwned=1>"\n')
    hive.wait_for(lambda: hive.get("/api/state")["agents"], what="the manager")
    hostile = "<script>window.__pwned = 1</script><b>bold?</b>"
    hive.post("/api/requests/spawn", {"name": "coder", "description": hostile})
    page = open_page(context, hive)
    hive.post("/api/messages", {"to": "manager", "body": f"hi {hostile}"})
    expect(page.locator("#approvals .desc")).to_have_text(hostile)
    expect(page.locator("#messages .message").first.locator(".body")).to_have_text(
        f"hi {hostile}")
    expect(agent(page, "manager").locator(".badges")).to_contain_text(
        "<img src=x onerror=window.__pwned=1> manager")
    assert page.locator("main script, main img, main b").count() == 0
    no_problems(page)


def test_port_conflicts_show_a_red_banner(context, make_hive):
    # One port for every agent: the second agent may spawn while the first is stopped.
    hive = make_hive('[hive]\nbackend = "fake"\nport_range = 1\n')
    hive.spawn("alpha")
    hive.post("/api/agents/alpha/stop")
    page = open_page(context, hive)
    banner = page.locator("#banner")
    expect(banner).to_be_hidden()
    hive.spawn("beta")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("port 8100: alpha, beta")
    expect(agent(page, "alpha").locator(".port")).to_have_class(re.compile("conflict"))
    expect(agent(page, "manager").locator(".port")).not_to_have_class(re.compile("conflict"))
    shot(page, "port-conflict", full_page=False)
    hive.post("/api/agents/beta/destroy", {"purge": True})
    expect(banner).to_be_hidden()
    no_problems(page)


def test_a_second_tab_sees_the_same_changes_live(context, hive):
    hive.spawn("coder")
    first, second = open_page(context, hive), open_page(context, hive)
    agent(first, "coder").get_by_role("button", name="stop", exact=True).click()
    for page in (first, second):
        expect(agent(page, "coder").locator(".status")).to_have_text("stopped")
    agent(second, "coder").get_by_role("button", name="start", exact=True).click()
    for page in (first, second):
        expect(agent(page, "coder").locator(".status")).to_have_text("running")
    approval = hive.post("/api/requests/spawn", {"name": "helper"})
    for page in (first, second):
        expect(pending(page, approval["id"])).to_be_visible()
    pending(second, approval["id"]).get_by_role("button", name="Approve", exact=True).click()
    for page in (first, second):
        expect(agent(page, "helper").locator(".status")).to_have_text("running")
        expect(pending(page, approval["id"])).to_be_hidden()
    no_problems(first)
    no_problems(second)


def test_destroy_keeps_a_tombstone_and_purge_says_what_is_lost(context, hive):
    hive.spawn("coder")
    page = open_page(context, hive)
    assert agent(page, "manager").get_by_role("button", name="destroy", exact=True).is_hidden()
    agent(page, "coder").get_by_role("button", name="destroy", exact=True).click()
    expect(page.locator("#dialog")).to_contain_text("tombstone")
    page.click("#dialog-ok")
    tomb = page.locator('#tombstones [data-tombstone="coder"]')
    expect(tomb).to_be_visible()
    expect(agent(page, "coder")).to_be_hidden()
    tomb.get_by_role("button", name="purge", exact=True).click()
    dialog = page.locator("#dialog")
    for words in ("config history", "credentials", "notes", "no undo"):
        expect(dialog).to_contain_text(words)
    shot(page, "purge-confirmation", full_page=False)
    page.click("#dialog-cancel")
    expect(dialog).to_be_hidden()
    expect(tomb).to_be_visible()
    tomb.get_by_role("button", name="re-spawn", exact=True).click()
    expect(agent(page, "coder").locator(".status")).to_have_text("running")
    expect(tomb).to_be_hidden()
    agent(page, "coder").get_by_role("button", name="purge", exact=True).click()
    page.click("#dialog-ok")
    expect(agent(page, "coder")).to_be_hidden()
    expect(tomb).to_be_hidden()
    assert not (hive.state_dir / "agents" / "coder").exists()
    no_problems(page)


def test_the_page_follows_the_hive_across_a_daemon_restart(context, make_hive):
    with socket.socket() as probe:  # a free port, fixed across the restart
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hive = make_hive(f'[hive]\nbackend = "fake"\n\n[dashboard]\nport = {port}\n')
    page = open_page(context, hive)
    for name in ("a", "b", "c"):  # enough events that the old seq exceeds the new daemon's
        hive.post("/api/requests/spawn", {"name": name})
    expect(page.locator("#approvals .approval")).to_have_count(3)
    manager = agent(page, "manager")
    expect(manager.get_by_role("button", name="stop", exact=True)).to_be_enabled()
    hive.stop()
    # Disconnected: said in a banner, rows greyed, every action off until the hive is back.
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    offline = page.locator("#offline")
    expect(offline).to_be_visible()
    expect(offline).to_contain_text("The hive is not answering")
    expect(page.locator("body")).to_have_class(re.compile("offline"))
    for button in (manager.get_by_role("button", name="stop", exact=True),
                   page.locator("#approvals .approval").first.get_by_role(
                       "button", name="Approve", exact=True),
                   page.locator("#compose").get_by_role("button", name="Send")):
        expect(button).to_be_disabled()
    expect(page.locator("#compose-body")).to_be_disabled()
    shot(page, "disconnected", full_page=False)
    sent: list[dict[str, Any]] = []

    def during_reload(route: Any) -> None:
        # Published before the new daemon's snapshot is taken, so its seq is not larger than
        # the snapshot's: it must still reach the feed (messages are not in the snapshot).
        if not sent:
            sent.append(hive.post("/api/messages", {"to": "manager", "body": "mid-reload"}))
        route.continue_()

    page.route("**/api/state", during_reload)
    hive.start()  # a new daemon: the page takes its snapshot
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#messages")).to_contain_text("mid-reload")
    assert sent
    expect(offline).to_be_hidden()
    expect(page.locator("body")).not_to_have_class(re.compile("offline"))
    expect(manager.get_by_role("button", name="stop", exact=True)).to_be_enabled()
    expect(manager.get_by_role("button", name="start", exact=True)).to_be_disabled()  # running
    expect(page.locator("#compose-body")).to_be_enabled()
    approval = hive.post("/api/requests/spawn", {"name": "late"})
    expect(pending(page, approval["id"])).to_be_visible()
    expect(page.locator("#approvals .approval")).to_have_count(4)
    no_problems(page)


def test_an_operator_question_is_answered_from_the_page(context, hive):
    page = open_page(context, hive)
    single = ask(hive, "manager", "Which model for <b>coder</b>?", ["small", "large"],
                 timeout=600)
    multi = ask(hive, "manager", "Which repos may coder push to?", ["api", "web", "docs"],
                multi=True)
    free = ask(hive, "manager", "Anything else before the refactor?")
    panel = page.locator("#questions-panel")
    expect(panel.locator(".question")).to_have_count(3)  # live, without a reload
    first = question(page, single["id"])
    expect(first.locator(".text")).to_have_text("Which model for <b>coder</b>?")
    expect(first.get_by_role("radio")).to_have_count(2)
    expect(first.locator(".deadline")).to_have_text(re.compile(r"^(10m 0s|9m \d+s) left$"))
    expect(question(page, multi["id"]).get_by_role("checkbox")).to_have_count(3)
    expect(question(page, free["id"]).get_by_role("textbox")).to_be_visible()
    expect(page).to_have_title("(3) hivekit")
    shot(page, "questions")
    first.get_by_label("large").check()
    first.get_by_role("button", name="Answer", exact=True).click()
    expect(first).to_be_hidden()
    box = question(page, multi["id"])
    box.get_by_label("api").check()
    box.get_by_label("docs").check()
    box.get_by_role("button", name="Answer", exact=True).click()
    expect(box).to_be_hidden()
    text = question(page, free["id"])
    text.get_by_role("textbox").fill("keep the <old> API working")
    text.get_by_role("button", name="Answer", exact=True).click()
    expect(panel).to_be_hidden()
    answers = {q["id"]: q for q in hive.get("/api/questions", all="true")}
    assert answers[single["id"]]["answer"] == "large"
    assert answers[multi["id"]]["answer"] == "api, docs"
    assert answers[free["id"]]["answer"] == "keep the <old> API working"
    assert all(answers[q["id"]]["answered_by"] == "operator" for q in (single, multi, free))
    # The asker hears it: the manager's inbox, shown in the broker feed too.
    expect(page.locator("#messages")).to_contain_text("question answered")
    no_problems(page)


def test_the_live_log_starts_with_its_history_on_a_fresh_page(context, hive):
    hive.spawn("coder")
    sha = hive.commit("coder", {"agent.conf": "model = 'large'\n"})
    applied = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    hive.post(f"/api/approvals/{applied['id']}/approve")
    hive.wait_resolved(applied["id"])
    page = open_page(context, hive)  # opened after all of it
    log = page.locator("#log")
    expect(log).to_contain_text(f"fake: built coder at {sha[:12]}")
    expect(log).to_contain_text(f"── approval #{applied['id']}: build")
    expect(log).to_contain_text(f"── approval #{applied['id']}: approved (deployed/"
                                f"{applied['id']})")
    # In seq order, each once; and what comes next follows them.
    seqs = [int(s) for s in log.locator(".line").evaluate_all(
        "els => els.map(e => e.dataset.seq)")]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    hive.post("/api/agents/coder/restart")
    expect(log.locator(".line").last).to_contain_text("coder")
    after = [int(s) for s in log.locator(".line").evaluate_all(
        "els => els.map(e => e.dataset.seq)")]
    assert after[:len(seqs)] == seqs and after == sorted(after)
    # A second tab opened now shows the same history.
    other = open_page(context, hive)
    expect(other.locator("#log")).to_contain_text(f"fake: built coder at {sha[:12]}")
    shot(page, "log-history", full_page=False)
    no_problems(page)


def test_a_failing_agent_shows_why_on_its_row_and_asks_for_attention(context, hive):
    hive.spawn("coder")
    page = open_page(context, hive)
    row = agent(page, "coder")
    expect(row.locator(".status")).to_have_text("running")
    expect(row.locator(".failure")).to_be_hidden()
    # What a crash-looping process backend reports (plugins/process/supervisor.py).
    report(hive, "coder", "failing", detail="crashed, restarting (restart 4)", exit_code=3,
           output=["loading config", "Traceback (most recent call last):",
                   "KeyError: 'model'"])
    expect(row.locator(".status")).to_have_text("failing")
    expect(row).to_have_class(re.compile(r"\bfailing\b"))
    expect(row.locator(".detail")).to_have_text("crashed, restarting (restart 4)")
    expect(row.locator(".failure .exit")).to_have_text("exit code 3")
    expect(row.locator(".failure .output")).to_have_text(
        "loading config\nTraceback (most recent call last):\nKeyError: 'model'")
    # It waits for the operator like an approval: in the count, its title, the tab's title.
    attention = page.locator("#attention")
    expect(attention).to_have_attribute("title", re.compile(r"1 failing \(coder\)"))
    count = int(attention.get_attribute("data-count"))
    expect(page).to_have_title(f"({count}) hivekit")
    # Wanted up: stop and restart stay on, start off.
    expect(row.get_by_role("button", name="restart", exact=True)).to_be_enabled()
    expect(row.get_by_role("button", name="start", exact=True)).to_be_disabled()
    shot(page, "failing-agent", full_page=False)
    report(hive, "coder", "failing", exit_code=-9, output=[])  # killed: no output kept
    expect(row.locator(".failure .exit")).to_have_text("killed by signal 9")
    expect(row.locator(".failure .output")).to_be_hidden()
    report(hive, "coder", "running")
    expect(row.locator(".failure")).to_be_hidden()
    expect(row).not_to_have_class(re.compile(r"\bfailing\b"))
    expect(attention).to_have_attribute("data-count", str(count - 1))
    no_problems(page)


def agent_says(hive: HiveProcess, sender: str, body: str) -> dict[str, Any]:
    """``sender`` sends the operator a message through its own socket."""
    path = hive.runtime_dir / "agents" / sender / "hive.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://hive",
                      timeout=10) as agent_api:
        resp = agent_api.post("/send", json={"to": "operator", "body": body})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_the_operators_inbox_shows_replies_from_history_and_marks_them_read(context, hive):
    hive.spawn("coder")
    first = agent_says(hive, "coder", "done with issue #12; the PR is open")
    second = agent_says(hive, "manager", "coder asks for the large model")
    page = open_page(context, hive)  # both sent before it opened
    feed = page.locator("#messages")
    for m in (first, second):
        item = feed.locator(f'[data-message="{m["id"]}"]')
        expect(item).to_have_class(re.compile("unread"))
        expect(item.locator(".route")).to_contain_text("→you")
    expect(page.locator("#unread-count")).to_have_text("2")
    expect(page.locator("#attention")).to_have_text("2 for you")
    expect(page).to_have_title("(2) hivekit")
    other = open_page(context, hive)
    feed.locator(f'[data-message="{first["id"]}"]').get_by_role(
        "button", name="mark read").click()
    for tab in (page, other):  # this tab at once, the other through messages_read
        expect(tab.locator(f'#messages [data-message="{first["id"]}"]')).not_to_have_class(
            re.compile("unread"))
        expect(tab.locator("#unread-count")).to_have_text("1")
    inbox = {m["id"]: m for m in hive.get("/api/agents/operator/inbox")}
    assert inbox[first["id"]]["acked_at"] and not inbox[second["id"]]["acked_at"]
    shot(page, "operator-inbox", full_page=False)
    # The CLI marks the rest; the pages follow.
    assert hive.cli("ack", "--all").returncode == 0
    for tab in (page, other):
        expect(tab.locator("#unread-count")).to_have_text("")
        expect(tab.locator("#messages .unread")).to_have_count(0)
        expect(tab).to_have_title("hivekit")
    # A new reply arrives live, unread.
    third = agent_says(hive, "coder", "tests are green")
    expect(feed.locator(f'[data-message="{third["id"]}"]')).to_have_class(re.compile("unread"))
    page.locator("#read-all").click()
    expect(page.locator("#unread-count")).to_have_text("")
    no_problems(page)
    no_problems(other)


def test_answered_questions_stay_in_a_history_view(context, hive):
    old = ask(hive, "manager", "Merge the refactor now?", ["yes", "no"])
    hive.post(f"/api/questions/{old['id']}/answer", {"answer": "no"})
    page = open_page(context, hive)
    history = page.locator("#answered-panel")
    expect(history).to_be_visible()  # answered before the page opened
    item = history.locator(f'[data-question="{old["id"]}"]')
    expect(item.locator(".text")).to_have_text("Merge the refactor now?")
    expect(item.locator(".answer")).to_have_text("→ no (you)")
    live = ask(hive, "manager", "Which <b>branch</b> for the hotfix?")
    card = question(page, live["id"])
    card.get_by_role("textbox").fill("release-1.2")
    card.get_by_role("button", name="Answer", exact=True).click()
    expect(card).to_be_hidden()
    answered = history.locator(f'[data-question="{live["id"]}"]')
    expect(answered.locator(".text")).to_have_text("Which <b>branch</b> for the hotfix?")
    expect(answered.locator(".answer")).to_have_text("→ release-1.2 (you)")
    expect(answered.locator(".outcome")).to_have_text("answered")
    expires = ask(hive, "manager", "Anything before I deploy?", timeout=1)
    expired = history.locator(f'[data-question="{expires["id"]}"]')
    expect(expired.locator(".outcome")).to_have_text("expired")
    expect(expired.locator(".answer")).to_have_text("no answer before its deadline")
    # Newest first.
    ids = history.locator(".answered").evaluate_all("els => els.map(e => e.dataset.question)")
    assert ids[:3] == [str(expires["id"]), str(live["id"]), str(old["id"])]
    shot(page, "question-history", full_page=False)
    no_problems(page)


def question(page: Any, question_id: int) -> Any:
    return page.locator(f'#questions [data-question="{question_id}"]')


def ask(hive: HiveProcess, asker: str, text: str, options: list[str] | None = None,
        multi: bool = False, timeout: float | None = None) -> dict[str, Any]:
    """``asker`` asks the operator, through its own agent socket (as its harness would)."""
    path = hive.runtime_dir / "agents" / asker / "hive.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://hive",
                      timeout=10) as agent_api:
        resp = agent_api.post("/ask", json={"question": text, "to": "operator",
                                            "options": options or [], "multi": multi,
                                            "timeout": timeout})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_overview_screenshot(context, hive):
    """The README's picture: a hive with some history."""
    page = open_page(context, hive)
    ask(hive, "manager", "The refactor touches the API: should coder open a PR per module?",
        ["one PR per module", "a single PR"], timeout=1500)
    hive.spawn("coder")
    hive.spawn("reviewer")
    (hive.state_dir / "agents" / "reviewer" / "creds" / "token.json").write_text("{}")
    bad = hive.commit("coder", {"FAIL": "error: attribute 'foo' missing\n  at flake.nix:12:5"})
    failed = hive.post("/api/requests/apply", {"agent": "coder", "commit": bad})
    hive.post(f"/api/approvals/{failed['id']}/approve")
    (hive.state_dir / "agents" / "coder" / "config" / "FAIL").unlink()
    sha = hive.commit("coder", {"agent.conf": "model = 'large'\nturns = 40\n"},
                      "bigger model, more turns")
    hive.post("/api/requests/apply", {"agent": "coder", "commit": sha,
                                      "description": "coder needs the large model for the "
                                                     "refactor; 40 turns per task"})
    hive.post("/api/messages", {"to": "coder", "body": "please pick up issue #12 next"})
    expect(page.locator("#messages")).to_contain_text("issue #12")
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(page.locator("#approvals .approval")).to_have_count(1)
    expect(page.locator("#approvals pre.diff .add").first).to_be_visible()
    shot(page, "overview", full_page=False)
    no_problems(page)


def test_the_page_drives_the_process_backend(context, make_hive):
    # The same operator flow on the embedded default backend: real agent processes (the
    # reference harness, under bubblewrap when it runs), a config a real parser rejects.
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    manager_port, agent_port = (s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    hive = make_hive(f'[hive]\nbackend = "process"\nmanager_port = {manager_port}\n'
                     f'port_base = {agent_port}\nport_range = 1\n\n[process]\n'
                     'restart_delay = 0.2\n')
    page = open_page(context, hive)
    expect(agent(page, "manager").locator(".status")).to_have_text("running")
    approval = hive.post("/api/requests/spawn", {"name": "demo"})
    pending(page, approval["id"]).get_by_role("button", name="Approve", exact=True).click()
    expect(agent(page, "demo").locator(".status")).to_have_text("running")
    status = httpx.get(f"http://127.0.0.1:{agent_port}/api/status", timeout=5).json()
    assert status["name"] == "demo"  # the real agent answers on its port
    page.select_option("#compose-to", "demo")
    page.fill("#compose-body", "hello from the page")
    page.locator("#compose").get_by_role("button", name="Send").click()
    expect(page.locator("#messages")).to_contain_text("re: demo got your message: "
                                                      "hello from the page")
    broken = hive.commit("demo", {"agent.toml": "command = \n"}, "broken")
    bad = hive.post("/api/requests/apply", {"agent": "demo", "commit": broken})
    pending(page, bad["id"]).get_by_role("button", name="Approve", exact=True).click()
    item = resolved(page, bad["id"])
    expect(item.locator(".outcome")).to_have_text("failed")
    expect(item.locator(".note")).to_contain_text("agent.toml: not valid TOML")
    expect(agent(page, "demo").locator(".status")).to_have_text("running")  # the old one runs
    assert httpx.get(f"http://127.0.0.1:{agent_port}/api/status", timeout=5).json()["pid"]
    shot(page, "process-backend")
    no_problems(page)
