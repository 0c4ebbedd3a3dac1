"""The promotion code's shape (issue 15): strategies are siblings of the options/dispatch module, not nested in it;
no import circle in llmops.k8s (imports under TYPE_CHECKING are type hints, not run-time edges); no private name is
imported across files; the one client and the one annotation prefix are used by both actions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llmops.k8s.rbac import covers

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "llmops" / "k8s"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every run-time import in a file (TYPE_CHECKING blocks skipped)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in K8S.glob("*.py"):
        mod = f"llmops.k8s.{path.stem}" if path.stem != "__init__" else "llmops.k8s"
        edges = set()
        for module, names in _imports(path):
            if module == "llmops.k8s":
                edges |= {f"llmops.k8s.{n}" for n in names}
            elif module.startswith("llmops.k8s."):
                edges.add(module)
        graph[mod] = edges
    return graph


def test_strategies_sit_beside_the_dispatcher():
    """(Import circles anywhere in llmops/, k8s included: tests/unit/test_layering.py.)"""
    graph = _graph()
    assert "llmops.k8s.promote" not in graph["llmops.k8s.rolling"] | graph["llmops.k8s.bluegreen"]
    assert {"llmops.k8s.rolling", "llmops.k8s.bluegreen"} <= graph["llmops.k8s.promote"]


@pytest.mark.parametrize("folder", ["llmops/k8s", "llmops/canary"])
def test_no_private_name_crosses_a_file(folder):
    crossing = [f"{path.relative_to(ROOT)}: {module}.{name}" for path in (ROOT / folder).rglob("*.py")
                for module, names in _imports(path) if module.startswith("llmops")
                for name in names if name.startswith("_")]
    assert not crossing


def test_one_client_and_one_prefix():
    from llmops.canary import kube as canary_kube
    from llmops.canary import state
    from llmops.canary.routers import nginx, replicas
    from llmops.k8s import annotations, client

    assert canary_kube.Kube is client.Kube
    for key in (state.ANNOTATION, replicas.ORIGINAL, nginx.OWNER):
        assert key.startswith(annotations.PREFIX) and key in annotations.WRITTEN
    assert annotations.get({"llmops-actions/model-version": "v1"}, annotations.MODEL_VERSION) == "v1"
    text = (ROOT / "llmops" / "k8s" / "annotations.py").read_text()
    for key in annotations.WRITTEN:
        assert f"``{key[len(annotations.PREFIX):]}``" in text, f"{key} is written but not documented"


def test_rules_review_coverage():
    rule = {"verbs": ["get", "watch"], "apiGroups": ["apps"], "resources": ["deployments"]}
    assert covers(rule, "apps", "deployments", "watch")
    assert not covers(rule, "apps", "deployments", "patch") and not covers(rule, "", "services", "get")
    assert covers({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, "coordination.k8s.io", "leases", "create")
