"""The library's layering (issue 15), read from the source: only the runner/report layer writes runner files and
workflow commands; no import circle anywhere in llmops/ (imports inside functions count, TYPE_CHECKING blocks do
not); no private name is imported across modules; the library used from plain Python prints no runner lines, and a
script still masks every secret before anything could print it; scripts/ holds only the actions' entry points."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "llmops"
# The runner/report layer: gha.py (runner I/O), cli.py (every script's main), and the report renderers scripts call.
RUNNER_LAYER = {"llmops/gha.py", "llmops/cli.py", "llmops/canary/report.py", "llmops/data/report.py",
                "llmops/eval/report.py", "llmops/train/report.py"}
WORKFLOW_TEXT = re.compile(r"::(error|warning|notice|debug|add-mask|group|endgroup|stop-commands)\b"
                           r"|GITHUB_(OUTPUT|STEP_SUMMARY|ENV|PATH|STATE)")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(LIB.rglob("*.py"))}


def _tree(path: Path) -> tuple[ast.Module, set[int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    return tree, skip


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every run-time import, relative imports resolved."""
    tree, skip = _tree(path)
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found += [(base, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for mod, path in MODULES.items():
        edges = set()
        for base, name in _imports(path):
            if name and f"{base}.{name}" in MODULES:
                edges.add(f"{base}.{name}")
            elif base in MODULES:
                edges.add(base)
        graph[mod] = edges - {mod}
    return graph


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a file except docstrings (which may name the commands they do not write)."""
    tree, _ = _tree(path)
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_only_the_runner_layer_imports_gha_or_writes_workflow_commands():
    offenders = []
    for path in MODULES.values():
        rel = str(path.relative_to(ROOT))
        if rel in RUNNER_LAYER:
            continue
        offenders += [f"{rel}: imports {base}.{name or ''}" for base, name in _imports(path)
                      if base == "llmops.gha" or (base == "llmops" and name == "gha")]
        offenders += [f"{rel}:{line}: {text[:60]!r}" for line, text in _strings(path) if WORKFLOW_TEXT.search(text)]
    assert not offenders, "library code writing to the runner (log, return or raise instead):\n" + "\n".join(offenders)
    assert all((ROOT / rel).is_file() for rel in RUNNER_LAYER)  # the allowlist names files that exist


def test_the_check_sees_an_offender(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text('"""Docstrings may say ::warning:: freely."""\nprint("::warning::x")\n')
    assert [text for _, text in _strings(path) if WORKFLOW_TEXT.search(text)] == ["::warning::x"]


def test_no_import_circle_in_llmops():
    graph, done, path = _graph(), set(), []

    def visit(node: str) -> None:
        if node in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert "llmops.gha" in graph["llmops.cli"] and "llmops.eval.metric_base" in graph["llmops.eval.metrics_text"]


def test_no_private_name_is_imported_across_modules():
    files = list(MODULES.values()) + sorted([*(ROOT / "scripts").glob("*.py"), *(ROOT / "bin").glob("*.py")])
    crossing = [f"{path.relative_to(ROOT)}: {base}.{name}" for path in files for base, name in _imports(path)
                if base.startswith("llmops") and name and name.startswith("_") and not name.startswith("__")]
    assert not crossing


LIBRARY_USE = """
import json, os, sys
from llmops.eval.backends.endpoint import EndpointBackend
from llmops.eval.runner import read_model_info
from llmops.k8s.kubeconfig import mask_secret
os.environ["TOKEN"] = "tok-library-0123456789"
EndpointBackend("http://u:pw-library-0123456789@127.0.0.1:1", api_key_env="TOKEN")
mask_secret("apiVersion: v1\\nusers:\\n- name: u\\n  user:\\n    token: kube-library-0123456789\\n")
read_model_info(sys.argv[1])
print("library done", flush=True)
from llmops import gha  # a script's runner layer: every secret known so far is masked at once
gha.forward_logs()
read_model_info(sys.argv[1])
"""


def test_library_prints_no_runner_lines_and_the_runner_layer_masks_what_it_read(tmp_path):
    (tmp_path / "llmops-model.json").write_text("{not json")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_ACTIONS": "true"}
    proc = subprocess.run([sys.executable, "-c", LIBRARY_USE, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    before, _, after = proc.stdout.partition("library done\n")
    assert "::" not in before, before
    masks = [line for line in after.splitlines() if line.startswith("::add-mask::")]
    for secret in ("pw-library-0123456789", "tok-library-0123456789", "kube-library-0123456789"):
        assert f"::add-mask::{secret}" in masks
    warning = [line for line in after.splitlines() if line.startswith("::warning ")]
    assert len(warning) == 1 and f"file={tmp_path}" in warning[0] and "not valid JSON" in warning[0]
    assert after.index("::add-mask::") < after.index("::warning")


def test_scripts_holds_only_the_action_entry_points():
    called = {line.split("scripts/", 1)[1].split(".py", 1)[0] for path in (ROOT / "actions").glob("*/action.yml")
              for line in path.read_text().splitlines() if "/scripts/" in line and ".py" in line}
    assert {p.stem for p in (ROOT / "scripts").glob("*.py")} == called == {
        "validate_data", "train", "evaluate_and_gate", "kubectl_promote", "canary_step"}
    assert not {"base_models", "tiny_model"} & {p.stem for p in LIB.glob("*.py")}  # demo helpers: llmops/demo/
