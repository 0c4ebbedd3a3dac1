"""Bad inputs to scripts/kubectl_promote.py and bin/integration_test.py, through the CLI as a user meets them:
a clear message, the right exit code, no traceback, and a kubeconfig secret that is never printed or left behind."""
from __future__ import annotations

import base64
import json
import socket

import pytest

from tests.integration.promote_helpers import ROOT, ModelServer, check, outputs, run_cli, write_verdict

PROMOTE = ROOT / "scripts" / "kubectl_promote.py"
SMOKE = ROOT / "bin" / "integration_test.py"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kubeconfig_text(server: str, token: str = "s3cr3t-token-value") -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                       "clusters": [{"name": "k", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                       "users": [{"name": "u", "user": {"token": token}}],
                       "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "prod"}}]})


def test_missing_and_failed_verdicts(tmp_path):
    base = ("--deployment", "llm", "--image", "x:2", "--kubeconfig", str(tmp_path / "nope"))
    check(run_cli(*base), 2, "no evaluation verdict given", "--force")
    check(run_cli(*base, "--verdict", str(tmp_path / "missing.json")), 2, "cannot read the verdict file")
    proc = run_cli(*base, "--verdict", write_verdict(tmp_path / "v.json", "fail"))
    check(proc, 1, "the evaluation verdict says fail: bleu 31.2 >= 30; not promoting")
    assert outputs(proc)["result"] == "fail"


def test_unreadable_kubeconfig_and_nothing_to_promote(tmp_path):
    check(run_cli("--deployment", "llm", "--force", "--image", "x:2", "--kubeconfig", str(tmp_path / "nope")), 2,
          "cannot read kubeconfig", "No such file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: [")
    check(run_cli("--deployment", "llm", "--force", "--image", "x:2", "--kubeconfig", str(bad)), 2, "not valid YAML")
    check(run_cli("--deployment", "llm", "--force", "--kubeconfig", str(bad)), 2, "nothing to promote")
    check(run_cli("--deployment", "llm", "--rollback", "--image", "x:2"), 2, "takes no --image")
    check(run_cli("--deployment", "llm", "--force", "--image", "x", "--timeout", "abc"), 2, "timeout")


def test_unreachable_api_server_is_exit_3(tmp_path):
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(kubeconfig_text(f"https://127.0.0.1:{closed_port()}"))
    proc = run_cli("--deployment", "llm", "--force", "--image", "x:2", "--kubeconfig", str(cfg),
                   "--request-timeout", "2", "--retry-budget", "3")
    check(proc, 3, "cannot reach the Kubernetes API server", "prod/llm")
    assert "retry" in proc.stdout, "retries are announced while the budget lasts"


@pytest.mark.parametrize("encode", [False, True], ids=["yaml", "base64"])
def test_kubeconfig_secret_is_masked_private_and_removed(tmp_path, encode):
    text = kubeconfig_text(f"https://127.0.0.1:{closed_port()}")
    secret = base64.b64encode(text.encode()).decode() if encode else text
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    (tmp_path / "out").write_text("")
    env = {"INPUT_KUBECONFIG_DATA": secret, "RUNNER_TEMP": str(runner_temp), "GITHUB_OUTPUT": str(tmp_path / "out"),
           "GITHUB_ACTIONS": "true"}
    proc = run_cli("--deployment", "llm", "--force", "--image", "x:2", "--request-timeout", "2",
                   "--retry-budget", "0.5", env=env)
    check(proc, 3, "cannot reach the Kubernetes API server")
    masked = [line for line in proc.stdout.splitlines() if line.startswith("::add-mask::")]
    assert masked, "the secret must be masked before anything else is printed"
    assert proc.stdout.index("::add-mask::") < proc.stdout.index("::error")
    unmasked = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("::add-mask::"))
    assert "s3cr3t-token-value" not in unmasked + proc.stderr
    assert list(runner_temp.iterdir()) == [], "the kubeconfig file written from the secret must be removed"


def test_bad_kubeconfig_secret_is_not_echoed(tmp_path):
    env = {"INPUT_KUBECONFIG_DATA": "%%% not yaml: [ s3cr3t"}
    proc = run_cli("--deployment", "llm", "--force", "--image", "x:2", env=env)
    check(proc, 2, "neither kubeconfig YAML nor base64")
    assert "s3cr3t" not in proc.stdout + proc.stderr


@pytest.fixture
def server():
    with ModelServer() as srv:
        yield srv


def test_integration_test_script_checks_each_answer(tmp_path, server):
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"prompt": "ping", "expect": "echo: ping"}\n{"id": "re", "prompt": "x", "expect_regex": "^ e"}\n')
    proc = run_cli("--endpoint", server.url, "--cases", str(cases), script=SMOKE)
    check(proc, 0, "healthy after 1 tries")
    assert outputs(proc)["passed"] == "2" and outputs(proc)["result"] == "pass"
    cases.write_text('{"prompt": "ping", "expect": "pong"}\n')
    check(run_cli("--endpoint", server.url, "--cases", str(cases), script=SMOKE), 1,
          "does not contain 'pong'", "1 of 1 integration checks failed")
    server.healthy = False
    check(run_cli("--endpoint", server.url, "--timeout", "1", script=SMOKE), 1, "answered 503")


def test_integration_test_script_bad_inputs(tmp_path):
    check(run_cli("--endpoint", f"http://127.0.0.1:{closed_port()}", "--timeout", "0.5", script=SMOKE), 3,
          "never answered")
    check(run_cli("--endpoint", "llm-server.svc", script=SMOKE), 2, "must be an http(s) URL")
    cases = tmp_path / "c.jsonl"
    cases.write_text('{"prompt": "a", "expected": "b"}\n')
    check(run_cli("--endpoint", "http://127.0.0.1:1", "--cases", str(cases), script=SMOKE), 2,
          "c.jsonl:1: unknown keys ['expected']")
