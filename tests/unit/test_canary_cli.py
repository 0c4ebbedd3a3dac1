"""scripts/canary_step.py on bad input: exit 2 with a message that says what to fix, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "canary_step.py"
BASE = ["--provider", "nginx", "--stable", "a", "--canary", "b", "--route", "r",
        "--prometheus-url", "http://127.0.0.1:9"]


def run(args, tmp_path, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    full_env.update(PYTHONPATH=str(ROOT), KUBECONFIG=str(tmp_path / "none"), **env)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=full_env)


@pytest.mark.parametrize("args,message", [
    (["--provider", "traefik"], "unknown traffic provider 'traefik'"),
    (["--steps", "50,10"], "steps must be increasing percentages"),
    (["--stable", "b"], "stable and canary name the same Deployment"),
    (["--weight", "20"], "weight is for mode step"),
    (["--prometheus-url", "prometheus:9090"], "prometheus-url must start with http://"),
    (["--queries", "missing.yaml"], "cannot read queries file missing.yaml"),
    (["--kubeconfig", "nope.yaml"], "cannot read kubeconfig nope.yaml"),
    (["--metrics-preset", "ollama"], "unknown metrics-preset 'ollama'"),
    (["--metrics-preset", "tgi", "--max-ttft-increase", "0.5"], "tgi cannot measure ttft_seconds"),
    (["--metrics-preset", "vllm", "--canary-selector", 'pod="a"'], "canary-selector and stable-selector go together"),
    (["--mode", "analyse", "--prometheus-url", ""], "prometheus-url is required in mode analyse"),
])
def test_bad_configuration_exits_2_with_the_fix(args, message, tmp_path):
    proc = run(BASE + args, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout
    assert "Traceback" not in proc.stderr and "result=error" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--interval", "soon"], "must be seconds or a duration"),
    (["--alpha", "0.7"], "between 0 and 0.5"),
    (["--max-error-rate", "lots"], "must be a number or off"),
    (["--mode", "walk"], "invalid choice"),
])
def test_bad_flag_values_are_argparse_errors(args, message, tmp_path):
    proc = run(BASE + args, tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_action_inputs_come_from_env(tmp_path):
    proc = run(["--stable", "a", "--canary", "b", "--prometheus-url", "http://127.0.0.1:9"], tmp_path,
               INPUT_PROVIDER="linkerd")
    assert proc.returncode == 2 and "unknown traffic provider 'linkerd'" in proc.stdout
    proc = run(BASE, tmp_path, INPUT_RESTART="yes")
    assert proc.returncode == 2 and "must be true or false" in proc.stdout


def test_unreachable_api_server_is_exit_3(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n")
    proc = run(BASE + ["--kubeconfig", str(kubeconfig), "--kube-timeout", "2"], tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot reach the Kubernetes API server" in proc.stdout
