"""Alert rule generation: the committed rule files match the generator, promtool accepts them, and promtool's unit
tests (deploy/monitoring/llmops-alerts.test.yml) show each alert fires for the bad version and not the healthy one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmops.errors import UsageError
from llmops.monitoring import rules

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "monitoring"
SCRIPT = ROOT / "bin" / "alert_rules.py"


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is required in CI: apt-get install prometheus")
    pytest.skip("promtool not installed (apt-get install prometheus)")


def _script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=cwd)


def test_error_rate_rule_is_a_ratio_and_latency_uses_le_and_version():
    exprs = {r["alert"]: r["expr"] for r in rules.alert_rules()}
    assert set(exprs) == {"LLMHighErrorRate", "LLMHighLatencyP99", "LLMQualityDrop", "LLMCostSpike"}
    err = exprs["LLMHighErrorRate"]
    assert 'status="error"' in err and "\n/\n" in err and err.rstrip().endswith("> 0.05")
    assert "sum by (le, namespace, model_version) (rate(llm_request_duration_seconds_bucket[5m]))" in \
        exprs["LLMHighLatencyP99"]


def test_thresholds_and_namespace_are_configurable():
    th = rules.AlertThresholds(error_rate=0.2, latency_p99_seconds=1.5, quality_min=0.9, namespace="prod",
                               min_request_rate=0.5, cost_min_per_hour=10, rate_window="2m")
    exprs = {r["alert"]: r["expr"] for r in rules.alert_rules(th)}
    assert "> 0.2" in exprs["LLMHighErrorRate"] and "> 0.5" in exprs["LLMHighErrorRate"]
    assert 'llm_requests_total{namespace="prod", status="error"}[2m]' in exprs["LLMHighErrorRate"]
    assert exprs["LLMHighLatencyP99"].endswith("> 1.5")
    assert exprs["LLMQualityDrop"].endswith("< 0.9")
    assert exprs["LLMCostSpike"].endswith("> 10")


@pytest.mark.parametrize("kwargs, message", [
    ({"error_rate": 5}, "error-rate must be a fraction"),
    ({"error_for": "5 minutes"}, "error-for must be a Prometheus duration"),
    ({"quality_min": -1}, "quality-min"),
    ({"namespace": "Prod_NS"}, "namespace"),
])
def test_bad_thresholds_are_rejected_with_the_flag_name(kwargs, message):
    with pytest.raises(UsageError, match=message):
        rules.AlertThresholds(**kwargs)


def test_committed_files_match_the_generator(tmp_path):
    proc = _script("--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for name in ("llmops-alerts.rules.yml", "llmops-alerts.prometheusrule.yaml"):
        assert (tmp_path / name).read_text() == (DEPLOY / name).read_text(), \
            f"deploy/monitoring/{name} is stale: run python bin/alert_rules.py"


def test_prometheus_rule_manifest_has_the_same_groups():
    manifest = yaml.safe_load((DEPLOY / "llmops-alerts.prometheusrule.yaml").read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1" and manifest["kind"] == "PrometheusRule"
    assert manifest["spec"] == yaml.safe_load((DEPLOY / "llmops-alerts.rules.yml").read_text())


def test_promtool_accepts_the_rules(promtool):
    proc = subprocess.run([promtool, "check", "rules", str(DEPLOY / "llmops-alerts.rules.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 rules found" in proc.stdout


def test_promtool_unit_tests_pass(promtool):
    proc = subprocess.run([promtool, "test", "rules", "llmops-alerts.test.yml"], cwd=DEPLOY,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_catch_a_wrong_threshold(promtool, tmp_path):
    """The same promtool tests fail against rules whose error threshold (20%) is above v2's 10% error rate."""
    proc = _script("--out-dir", str(tmp_path), "--error-rate", "0.2", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copy(DEPLOY / "llmops-alerts.test.yml", tmp_path)
    proc = subprocess.run([promtool, "test", "rules", "llmops-alerts.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "LLMHighErrorRate" in proc.stdout + proc.stderr


def test_cli_rejects_bad_thresholds_with_exit_2(tmp_path):
    proc = _script("--out-dir", str(tmp_path), "--latency-for", "ten")
    assert proc.returncode == 2
    assert "latency-for must be a Prometheus duration" in proc.stdout
    proc = _script("--out-dir", str(tmp_path), "--manifest-label", "release")
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stdout
