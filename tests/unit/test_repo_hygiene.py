"""Repository-wide rules a user relies on: no script injection in any action or workflow, docs match action.yml,
every action follows the thin-wrapper shape."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tools import gen_docs

ROOT = Path(__file__).resolve().parents[2]
YAML_FILES = sorted(
    [p for p in (ROOT / "actions").glob("*/action.yml")]
    + list((ROOT / "workflows-templates").glob("*.yml"))
    + list((ROOT / ".github" / "workflows").glob("*.yml"))
)
INJECTION = re.compile(r"\$\{\{[^}]*\b(inputs\.|github\.event\.|github\.head_ref|steps\.[^}]*outputs)")


def _run_blocks(node, where=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                yield where, value
            else:
                yield from _run_blocks(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _run_blocks(item, f"{where}[{i}]")


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_expressions_from_untrusted_input_inside_run(path):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    bad = [where for where, text in _run_blocks(doc) if INJECTION.search(text)]
    assert not bad, f"{path.name}: pass inputs through env:, not ${{{{ }}}} inside run: at {bad}"


def test_injection_check_catches_a_bad_step(tmp_path):
    doc = {"runs": {"steps": [{"run": 'echo "${{ inputs.name }}"'}, {"run": 'echo "$NAME"'}]}}
    assert [w for w, t in _run_blocks(doc) if INJECTION.search(t)] == [".runs.steps[0]"]


def test_there_are_files_to_check():
    assert any(p.name == "action.yml" for p in YAML_FILES)


def test_readme_and_action_pages_match_action_yml():
    assert gen_docs.main(["--check"]) == 0, "run: python tools/gen_docs.py"


def test_docs_check_notices_drift(tmp_path):
    (tmp_path / "actions" / "demo").mkdir(parents=True)
    (tmp_path / "actions" / "demo" / "action.yml").write_text(
        "name: demo\ndescription: d\ninputs:\n  a:\n    description: first\n    default: '1'\n"
        "outputs:\n  result:\n    description: r\n    value: x\nruns: {using: composite, steps: []}\n")
    (tmp_path / "README.md").write_text("# x\n")
    assert gen_docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert gen_docs.main(["--root", str(tmp_path)]) == 0
    assert gen_docs.main(["--check", "--root", str(tmp_path)]) == 0
    assert "| `a` | no | `1` | first |" in (tmp_path / "README.md").read_text()
    spec = (tmp_path / "actions" / "demo" / "action.yml").read_text().replace("first", "changed")
    (tmp_path / "actions" / "demo" / "action.yml").write_text(spec)
    assert gen_docs.main(["--check", "--root", str(tmp_path)]) == 1


@pytest.mark.parametrize("name, spec", gen_docs.actions(), ids=lambda x: x if isinstance(x, str) else "")
def test_action_shape(name, spec):
    """Thin actions: every action has a result output, a python/install input, and calls its script once."""
    assert "result" in (spec.get("outputs") or {}), f"{name} must set a 'result' output"
    inputs = spec.get("inputs") or {}
    assert "python" in inputs and "install" in inputs, f"{name} needs the python and install inputs"
    steps = spec["runs"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert sum("scripts/" in r for r in runs) == 1, f"{name} must call exactly one script"
    for key in inputs:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", key), f"{name}: input {key} must be kebab-case"
