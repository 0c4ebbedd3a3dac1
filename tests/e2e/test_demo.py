"""The README's first command with `--base-model tiny` (CPU, a tiny random model built offline, seconds): the
whole story runs, the gate passes the fine-tune against the base model's verdict and fails the broken candidate
against the new production verdict. The real SmolLM2 run is tests/e2e/test_smollm2.py (slow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.traffic import ModelPods

ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "bin" / "run_pipeline.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)

pytestmark = pytest.mark.slow  # the module's first run is a whole pipeline (a minute or more)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = demo("--base-model", "tiny", "--out-dir", str(out), "--model-version", "demo-1")
    return out, proc


def test_the_story_passes_the_fine_tune_and_stops_the_broken_candidate(first_run):
    out, proc = first_run
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    for stage in ("[1/7] validate-data", "[2/7] base model", "[3/7] evaluate-and-gate: the base model",
                  "[4/7] train the fine-tune candidate", "[5/7] evaluate-and-gate the fine-tune candidate against "
                  "the base model's verdict", "[6/7] train the broken candidate",
                  "[7/7] evaluate-and-gate the broken candidate against production's verdict"):
        assert stage in proc.stdout
    good = json.loads((out / "models" / "demo-1" / "verdict.json").read_text())
    bad = json.loads((out / "models" / "demo-1-broken" / "verdict.json").read_text())
    assert good["result"] == "pass" and bad["result"] == "fail"
    assert good["metrics"]["accuracy"]["value"] > 0 and good["baseline"]
    # the broken one was gated against production (the fine-tune's verdict), not against the base model
    assert (out / "production" / "verdict.json").read_text() == (out / "models/demo-1/verdict.json").read_text()
    assert json.loads((out / "production" / "model.json").read_text())["model_version"] == "demo-1"
    assert "deliberately broken: learning rate 0.3 (100x too high)" in proc.stdout
    table = proc.stdout[proc.stdout.index("==> what the gates decided"):]
    fine_tune = next(line for line in table.splitlines() if line.startswith("| fine-tune |"))
    broken = next(line for line in table.splitlines() if line.startswith("| broken |"))
    assert "(better)" in fine_tune and "**pass** (exit 0)" in fine_tune
    assert "(worse)" in broken and "**fail** (exit 1)" in broken
    assert "production stays demo-1" in proc.stdout
    assert "| train fine-tune |" in proc.stdout and "| total |" in proc.stdout  # time per stage


def test_a_second_run_reuses_the_base_verdict_and_quick_skips_the_broken_candidate(first_run):
    out, proc = first_run
    assert proc.returncode == 0
    again = demo("--base-model", "tiny", "--out-dir", str(out), "--model-version", "demo-2", "--quick")
    assert again.returncode == 0, again.stdout[-4000:]
    assert "reusing" in again.stdout and "base-verdicts" in again.stdout  # evaluated once, cached in the run folder
    assert "[5/5] evaluate-and-gate the fine-tune candidate" in again.stdout
    assert "broken" not in again.stdout
    assert json.loads((out / "production" / "model.json").read_text())["model_version"] == "demo-2"


def test_bad_data_stops_the_pipeline_at_validation(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "", "completion": "x"}\n{not json\n')
    proc = demo("--base-model", "tiny", "--out-dir", str(tmp_path / "out"), "--dataset", str(bad),
                "--min-samples", "1")
    assert proc.returncode == 1
    assert "stage 'validate-data' failed (exit 1)" in proc.stdout
    assert "train the fine-tune" not in proc.stdout
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
        run = demo("--base-model", "tiny", "--out-dir", str(out), "--model-version", "demo-3", "--quick",
                   "--baseline", str(out / "production" / "verdict.json"), "--kubeconfig", k8s_cluster.kubeconfig,
                   "--namespace", ns, "--deployment", "llm-server", "--health-url", f"{pods.url}/health",
                   "--endpoint", pods.url)
    finally:
        pods.close()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "against the given baseline's verdict" in run.stdout
    assert "[5/6] kubectl-promote" in run.stdout and "[6/6] integration test" in run.stdout
    assert pods.history[-1] == "demo-3"
