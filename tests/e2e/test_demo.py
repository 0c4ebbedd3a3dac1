"""The README's first command: the whole pipeline on the bundled example, locally (CPU, tiny model, no network)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.traffic import ModelPods

ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = demo("--out-dir", str(out), "--model-version", "demo-1")
    return out, proc


def test_the_bundled_example_runs_to_a_passing_gate(first_run):
    out, proc = first_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for stage in ("[1/4] validate-data", "[2/4] base model", "[3/4] train", "[4/4] evaluate-and-gate"):
        assert stage in proc.stdout
    model = out / "models" / "demo-1"
    meta = json.loads((model / "llmops-model.json").read_text())
    assert meta["model_version"] == "demo-1"
    verdict = json.loads((model / "verdict.json").read_text())
    assert verdict["result"] == "pass"
    assert "No cluster configured, so the run stopped after the quality gate" in proc.stdout
    assert f"verdict:  {model / 'verdict.json'}" in proc.stdout


def test_a_second_model_is_gated_against_the_first(first_run, tmp_path):
    out, proc = first_run
    assert proc.returncode == 0
    again = demo("--out-dir", str(out), "--model-version", "demo-2", "--baseline",
                 str(out / "models" / "demo-1" / "verdict.json"))
    assert again.returncode == 0, again.stdout[-4000:]
    verdict = json.loads((out / "models" / "demo-2" / "verdict.json").read_text())
    assert verdict["baseline"]  # compared sample by sample with demo-1
    assert "reusing" in again.stdout  # the base model is built once


def test_bad_data_stops_the_pipeline_at_validation(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "", "completion": "x"}\n{not json\n')
    proc = demo("--out-dir", str(tmp_path / "out"), "--dataset", str(bad), "--min-samples", "1")
    assert proc.returncode == 1
    assert "stage 'validate-data' failed (exit 1)" in proc.stdout
    assert "[3/4] train" not in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.k8s
def test_with_a_cluster_it_promotes_and_integration_tests(first_run, k8s_cluster, tmp_path):
    from kubernetes import client

    out, proc = first_run
    assert proc.returncode == 0
    ns = k8s_cluster.namespace()
    apps = client.AppsV1Api(k8s_cluster.api_client)
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "llm-server"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "llm"}}, "template": {
            "metadata": {"labels": {"app": "llm"}}, "spec": {"containers": [{"name": "server", "image": "llm:1", "env": [
                {"name": "MODEL_VERSION", "value": "demo-1"},
                {"name": "MODEL_URI", "value": str((out / "models" / "demo-1").resolve())}]}]}}}})
    pods = ModelPods(k8s_cluster, ns, "llm-server", tmp_path, echo=False)
    pods.start()
    try:
        run = demo("--out-dir", str(out), "--model-version", "demo-3", "--kubeconfig", k8s_cluster.kubeconfig,
                   "--namespace", ns, "--deployment", "llm-server", "--health-url", f"{pods.url}/health",
                   "--endpoint", pods.url)
    finally:
        pods.close()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "[5/6] kubectl-promote" in run.stdout and "[6/6] integration test" in run.stdout
    assert pods.history[-1] == "demo-3"
