"""The docs a plugin author works from stay true: the tutorial's code is the example backend's
code, it lists every contract check, the Kubernetes page covers every hook, the README points
to them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from hivekit import hookspecs
from hivekit.testing.conformance import BackendContract

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
TMUX = ROOT / "examples" / "hivekit-tmux"
TUTORIAL = (DOCS / "write-a-backend.md").read_text()
HOOKS = sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
               if hasattr(f, "hivekit_spec"))
BLOCKS = re.findall(r"```python\n(.*?)```", TUTORIAL, re.S)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0][:40] for b in BLOCKS])
def test_every_code_block_of_the_tutorial_is_the_example_backends_code(block):
    first, _, rest = block.partition("\n")
    if first.startswith("# examples/hivekit-tmux/"):  # a whole file, named
        assert (ROOT / first[2:]).read_text() == rest
    else:
        assert block in (TMUX / "hivekit_tmux.py").read_text()


def test_the_tutorial_lists_every_contract_check():
    checks = [n for n in vars(BackendContract) if n.startswith("test_")]
    assert checks and [c for c in checks if f"`{c}`" not in TUTORIAL] == []


def test_the_tutorial_shows_every_hook_the_backend_implements():
    hooks = re.findall(r"^@hookimpl\ndef (\w+)\(", (TMUX / "hivekit_tmux.py").read_text(), re.M)
    assert hooks and [h for h in hooks if f"@hookimpl\ndef {h}(" not in TUTORIAL] == []


@pytest.mark.parametrize("hook", HOOKS)
def test_the_kubernetes_page_says_how_that_backend_meets_every_hook(hook):
    assert f"`{hook}`" in (DOCS / "kubernetes.md").read_text()


def test_the_readme_points_plugin_authors_to_the_reference_and_the_tutorial():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin"):readme.index("## The HTTP API")]
    for page in ("docs/plugin-hooks.md", "docs/write-a-backend.md", "docs/kubernetes.md"):
        assert f"]({page})" in section
        assert (ROOT / page).is_file()
