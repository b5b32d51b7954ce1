"""``flake.lock`` surgery: move one input's entry between two lock files, touching nothing else.

Deploys of different agents run at once and share one ``flake.lock``. So that one agent's abort
never undoes another agent's pin, and a commit for one agent never records another's unfinished
pin, the meta flake moves *entries*: the node a root input points at and every node reachable
from it (the input's own inputs), and nothing that another root input also reaches.

The JSON is written as Nix writes it (two-space indent, sorted keys, a final newline), so a lock
that went through here unchanged is byte-identical to what Nix wrote.
"""

from __future__ import annotations

import copy
import json
from typing import Any

Lock = dict[str, Any]


def loads(text: str | None) -> Lock | None:
    """The parsed lock, or None for no lock (absent or empty)."""
    if text is None or not text.strip():
        return None
    lock = json.loads(text)
    if not isinstance(lock, dict) or "nodes" not in lock or "root" not in lock:
        raise ValueError("not a flake.lock (no nodes/root)")
    return lock


def dumps(lock: Lock) -> str:
    """``lock`` as Nix writes it."""
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def empty(version: int = 7) -> Lock:
    return {"nodes": {"root": {}}, "root": "root", "version": version}


def root_inputs(lock: Lock | None) -> dict[str, Any]:
    """The root node's inputs: name → node key (or a ``follows`` path, a list)."""
    if lock is None:
        return {}
    return dict(lock["nodes"][lock["root"]].get("inputs", {}))


def _reach(lock: Lock, key: str) -> set[str]:
    nodes, seen, todo = lock["nodes"], set(), [key]
    while todo:
        k = todo.pop()
        if k in seen or k not in nodes:
            continue
        seen.add(k)
        todo.extend(v for v in nodes[k].get("inputs", {}).values() if isinstance(v, str))
    return seen


def owned_nodes(lock: Lock, name: str) -> set[str]:
    """Node keys that belong to root input ``name`` alone."""
    inputs = root_inputs(lock)
    ref = inputs.get(name)
    if not isinstance(ref, str):
        return set()
    others: set[str] = set()
    for other, other_ref in inputs.items():
        if other != name and isinstance(other_ref, str):
            others |= _reach(lock, other_ref)
    return _reach(lock, ref) - others - {lock["root"]}


def entry(lock: Lock | None, name: str) -> Any:
    """Input ``name``'s entry with node keys resolved: equal entries pin the same things."""
    ref = root_inputs(lock).get(name)
    if lock is None or ref is None:
        return None
    if not isinstance(ref, str):
        return {"follows": ref}

    def expand(key: str, depth: int) -> Any:
        if depth > 64:  # lock graphs are acyclic; this only guards against a corrupt file
            raise ValueError("flake.lock nests too deep (a cycle?)")
        node = dict(lock["nodes"][key])
        node["inputs"] = {k: expand(v, depth + 1) if isinstance(v, str) else {"follows": v}
                          for k, v in node.get("inputs", {}).items()}
        return node

    return expand(ref, 0)


def locked(lock: Lock | None, name: str) -> dict[str, Any]:
    """The ``locked`` attributes of input ``name`` (rev, narHash, url...); {} if not locked."""
    ref = root_inputs(lock).get(name)
    if lock is None or not isinstance(ref, str):
        return {}
    return dict(lock["nodes"].get(ref, {}).get("locked", {}))


def replace_input(target: Lock | None, source: Lock | None, name: str) -> Lock:
    """A copy of ``target`` whose input ``name`` is ``source``'s (absent there → removed).

    Every other input of ``target`` keeps its nodes untouched. Node keys of the copied entry are
    kept where free and suffixed (``_2``...) where ``target`` uses them already; Nix reads any
    key names.
    """
    out = copy.deepcopy(target) if target is not None else empty(
        source.get("version", 7) if source else 7)
    nodes = out["nodes"]
    for key in owned_nodes(out, name):
        del nodes[key]
    root = nodes[out["root"]]
    inputs = root.setdefault("inputs", {})
    inputs.pop(name, None)
    ref = root_inputs(source).get(name)
    if source is None or ref is None:
        if not inputs:
            root.pop("inputs")
        return out
    if not isinstance(ref, str):
        inputs[name] = copy.deepcopy(ref)
        return out
    renamed: dict[str, str] = {}

    def graft(key: str) -> str:
        if key in renamed:
            return renamed[key]
        new, i = key, 2
        while new in nodes:
            new, i = f"{key}_{i}", i + 1
        renamed[key] = new
        node = copy.deepcopy(source["nodes"][key])
        nodes[new] = node
        for k, v in node.get("inputs", {}).items():
            if isinstance(v, str):
                node["inputs"][k] = graft(v)
        return new

    inputs[name] = graft(ref)
    return out
