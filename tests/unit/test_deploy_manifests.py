"""deploy/ as a user applies it: every manifest parses, its kinds and fields hang together (selectors match pod
labels, Services and ports exist for every route and scrape, MODEL_URI / MODEL_VERSION drive the servers), and the
Dockerfile builds what deploy/llm-server.yaml runs. Server-side dry runs on the real control plane are in
tests/integration/test_deploy_k8s.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(p for p in DEPLOY.rglob("*.yaml") if "monitoring/llmops-alerts" not in str(p))
KINDS = {"Deployment", "Service", "HTTPRoute", "PodMonitor", "ServiceAccount", "Role", "RoleBinding",
         "PrometheusRule"}


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p in MANIFESTS for d in docs(p) if d["kind"] == kind]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_each_manifest_parses_with_known_kinds_and_names(path):
    for doc in docs(path):
        assert doc["kind"] in KINDS, (path, doc["kind"])
        assert doc.get("apiVersion") and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        assert "namespace" not in doc["metadata"], "examples are applied with -n"


def test_deployments_select_their_pods_and_probe_a_named_port():
    deployments = by_kind("Deployment")
    assert {p.parent.name for p, _ in deployments} >= {"vllm", "tgi", "deploy"}
    for path, dep in deployments:
        spec = dep["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), path
        for c in spec["template"]["spec"]["containers"]:
            ports = {p["name"] for p in c["ports"]}
            assert c["image"] and ":" in c["image"] and not c["image"].endswith(":latest"), path
            for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
                if probe in c:
                    action = c[probe].get("httpGet") or c[probe].get("tcpSocket")
                    assert action and action["port"] in ports, (path, probe)
            env = {e["name"] for e in c.get("env", [])}
            assert "MODEL_VERSION" in env, path  # what kubectl-promote / canary-step change (with MODEL_URI)
            used = set(re.findall(r"\$\(([A-Z_]+)\)", " ".join(c.get("args", []) + c.get("command", []))))
            assert used <= env, (path, used - env)


@pytest.mark.parametrize("stack", ["vllm", "tgi"])
def test_model_server_examples_take_the_model_from_model_uri(stack):
    deps = {d["metadata"]["name"]: d for p, d in by_kind("Deployment") if p.parent.name == stack}
    assert set(deps) == {"llm-stable", "llm-canary"}
    versions = set()
    for dep in deps.values():
        c = dep["spec"]["template"]["spec"]["containers"][0]
        args = c["args"]
        versions.add(next(e["value"] for e in c["env"] if e["name"] == "MODEL_VERSION"))
        assert c["resources"]["limits"]["nvidia.com/gpu"]
        if stack == "vllm":
            assert c["image"].startswith("vllm/vllm-openai:") and args[0] == "$(MODEL_URI)"
            assert args[args.index("--served-model-name") + 1] == "$(MODEL_VERSION)"
        else:
            assert c["image"].startswith("ghcr.io/huggingface/text-generation-inference:")
            assert args[args.index("--model-id") + 1] == "$(MODEL_URI)"
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(port)
        assert ann["prometheus.io/path"] == "/metrics"
    assert len(versions) == 2  # the canary serves another version than stable
    services = {d["metadata"]["name"]: d for p, d in by_kind("Service") if p.parent.name == stack}
    for name, svc in services.items():  # named like its Deployment (the presets' and canary-step's default)
        labels = deps[name]["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()


def test_httproute_splits_between_the_example_services():
    (path, route), = by_kind("HTTPRoute")
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [r["name"] for r in refs] == ["llm-stable", "llm-canary"] and sum(r["weight"] for r in refs) == 100
    for stack in ("vllm", "tgi"):
        services = {d["metadata"]["name"]: d for p, d in by_kind("Service") if p.parent.name == stack}
        for ref in refs:
            assert ref["port"] in [p["port"] for p in services[ref["name"]]["spec"]["ports"]]


def test_podmonitor_scrapes_every_example_pod_on_a_named_port():
    (_, pm), = by_kind("PodMonitor")
    values = set(pm["spec"]["selector"]["matchExpressions"][0]["values"])
    endpoint = pm["spec"]["podMetricsEndpoints"][0]
    for path, dep in by_kind("Deployment"):
        if path.name == "bluegreen.yaml":
            continue
        tpl = dep["spec"]["template"]
        assert tpl["metadata"]["labels"]["app"] in values, path
        assert endpoint["port"] in {p["name"] for c in tpl["spec"]["containers"] for p in c["ports"]}, path
    assert endpoint["path"] == "/metrics"


def test_dockerfile_builds_the_reference_server_llm_server_yaml_runs():
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "\nFROM python:3.12-slim\n" in text
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (ROOT / src).exists(), src
    ignored = (ROOT / ".dockerignore").read_text()
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert f"!{src}" in ignored or f"!{src}/" in ignored, src
    assert "bin/serve.py" in text and "--model-version" in text and "MODEL_URI" in text
    (_, dep), = [(p, d) for p, d in by_kind("Deployment") if p.name == "llm-server.yaml"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].split("/")[-1].startswith("llm-server:")
    assert "deploy/Dockerfile" in (DEPLOY / "llm-server.yaml").read_text()
