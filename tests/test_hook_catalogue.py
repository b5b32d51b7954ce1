"""Every hook is documented and tested (as datasette's test_plugin_hooks_have_tests): a hookspec
needs a docstring naming each argument (``:param x:``), ``:returns:`` when it returns something,
"Stops at first non-None result" when it is firstresult, a section in docs/plugin-hooks.md whose
heading is its signature, with an example, and a test that exercises it. The cases are generated
from hookspecs.py, so a new hook is held to this without editing the test."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from hivekit import hookspecs

ROOT = Path(__file__).parent.parent
REFERENCE = ROOT / "docs" / "plugin-hooks.md"
#: Where a hook counts as exercised: the tests, their plugins, and the testing package (the
#: fake backend and the conformance suite, which every backend's tests run).
TEST_SOURCES = [p for p in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "hivekit" / "testing")
                            .rglob("*.py")] if p.name != Path(__file__).name]


def hooks(module=hookspecs) -> dict[str, Callable]:
    return {name: f for name, f in inspect.getmembers(module, inspect.isfunction)
            if hasattr(f, "hivekit_spec")}


def undocumented(func: Callable) -> list[str]:
    doc = inspect.getdoc(func) or ""
    flat = " ".join(doc.split())
    problems = []
    if not doc.strip():
        return ["no docstring"]
    summary = doc.splitlines()[0]
    if not summary.endswith((".", ":")) and len(doc.splitlines()) > 1 and doc.splitlines()[1]:
        problems.append("the summary is not one line")
    for arg in inspect.signature(func).parameters:
        if f":param {arg}:" not in doc:
            problems.append(f"no ':param {arg}:'")
    returns = inspect.signature(func).return_annotation
    if returns not in ("None", None, inspect.Signature.empty) and ":returns:" not in doc:
        problems.append("no ':returns:' although it returns something")
    if func.hivekit_spec.get("firstresult") and "Stops at first non-None result" not in flat:
        problems.append('firstresult, but it does not say "Stops at first non-None result"')
    if not re.search(r"rais|exception", doc, re.IGNORECASE):
        problems.append("does not say what raising does")
    return problems


def unreferenced(name: str, func: Callable, reference: str) -> list[str]:
    heading = f"## {name}({', '.join(inspect.signature(func).parameters)})"
    lines = reference.splitlines()
    if heading not in lines:
        return [f"no section {heading!r} in {REFERENCE.relative_to(ROOT)}"]
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    section = "\n".join(lines[start:end])
    problems = []
    if "```python" not in section:
        problems.append(f"its section in {REFERENCE.name} has no example")
    if "**Raising**" not in section:
        problems.append(f"its section in {REFERENCE.name} does not say what raising does")
    return problems


def untested(name: str, sources: list[str]) -> list[str]:
    """Whether some test implements the hook, calls it, or names it as a string."""
    pattern = re.compile(rf"def {name}\(|hook\.{name}\(|[\"']{name}[\"']")
    if any(pattern.search(text) for text in sources):
        return []
    return [f"no test implements or calls {name} (def {name}(...) in a test plugin, "
            f"hive.hook.{name}(...), or {name!r})"]


SOURCES = [p.read_text() for p in TEST_SOURCES]


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_has_a_docstring_naming_its_arguments(name):
    assert undocumented(hooks()[name]) == []


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_has_a_section_in_the_reference(name):
    assert unreferenced(name, hooks()[name], REFERENCE.read_text()) == []


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_has_a_test(name):
    assert untested(name, SOURCES) == []


def test_the_reference_has_no_section_for_a_hook_that_does_not_exist():
    signatures = {f"## {n}({', '.join(inspect.signature(f).parameters)})"
                  for n, f in hooks().items()}
    headings = [line for line in REFERENCE.read_text().splitlines()
                if re.match(r"## \w+\(", line)]
    assert [h for h in headings if h not in signatures] == []


def test_hooks_called_plugin_by_plugin_are_declared_so():
    # Every `each("x"` / `call_each("x"` in the core names a hook of PER_PLUGIN (whose wrapper
    # implementations are refused), and every PER_PLUGIN name is a hook.
    called = set()
    for path in (ROOT / "hivekit").rglob("*.py"):
        called |= set(re.findall(r"\beach\(\s*\"(\w+)\"", path.read_text()))
    assert called <= hookspecs.PER_PLUGIN, called - hookspecs.PER_PLUGIN
    assert set(hooks()) >= hookspecs.PER_PLUGIN


def test_the_catalogue_catches_a_hook_added_without_docs_or_test():
    from hivekit import hookspec

    @hookspec(firstresult=True)
    def agent_mood(hive, agent) -> str | None:
        """How the agent feels."""

    assert undocumented(agent_mood) == [
        "no ':param hive:'", "no ':param agent:'",
        "no ':returns:' although it returns something",
        'firstresult, but it does not say "Stops at first non-None result"',
        "does not say what raising does"]
    assert unreferenced("agent_mood", agent_mood, REFERENCE.read_text()) == [
        "no section '## agent_mood(hive, agent)' in docs/plugin-hooks.md"]
    assert untested("agent_mood", ["def agent_moody(hive): pass"]) != []
    assert untested("agent_mood", ["    def agent_mood(self, hive, agent):"]) == []
