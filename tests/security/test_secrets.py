"""Every action script under a fake runner (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_ENV, GITHUB_PATH,
GITHUB_STATE, RUNNER_TEMP, GITHUB_WORKSPACE in a temp dir) with a recognisable secret in each secret input (and the
tokens a step commonly carries in its environment): the secret appears in no output, summary, report, temp file or
log line, except the ``::add-mask::`` lines that tell the runner to hide it. The servers are hostile: they echo the
credentials they receive back into their error bodies."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from tests.security.conftest import send

KUBE_TOKEN = "kube-S3CRET-4b1d9e0c7a"
PROM_TOKEN = "prom-S3CRET-77aa01bc"
PROM_PASSWORD = "prom-pw-S3CRET-5e6f"
API_KEY = "sk-S3CRET-openai-0a1b2c3d4e"
HF_TOKEN = "hf_S3CRETtokenvalue0123456789abcd"
GH_TOKEN = "ghs_S3CRETgithubtoken0123456789abc"
STEP_ENV = {"HF_TOKEN": HF_TOKEN, "GITHUB_TOKEN": GH_TOKEN}


def assert_no_leak(runner, res, secrets: list[str]) -> None:
    for secret in secrets:
        for line in res.log.splitlines():
            if secret in line:
                assert line.startswith("::add-mask::"), f"secret in the log: {line[:300]}"
        for name, content in runner.written().items():
            assert secret.encode() not in content, f"secret in {name}"
    assert not list(runner.temp.glob("llmops-kubeconfig-*")), "the kubeconfig secret was left in RUNNER_TEMP"


def echo(status: int):
    """A server that puts the credentials it got into its error body (as careless proxies do)."""
    def handler(req):
        auth = req.headers.get("Authorization") or ""
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                           "reason": "NotFound", "message": f"no such object (you sent {auth})",
                           "error": {"message": f"bad request with {auth}"}}).encode()
        send(req, status, body)
    return handler


def kubeconfig(server: str, token: str, extra_cluster: dict | None = None) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "ci",
                           "clusters": [{"name": "c", "cluster": {"server": server, **(extra_cluster or {})}}],
                           "contexts": [{"name": "ci", "context": {"cluster": "c", "user": "u", "namespace": "prod"}}],
                           "users": [{"name": "u", "user": {"token": token}}]})


def test_validate_data_keeps_step_tokens_out(runner):
    data = runner.workspace / "d.jsonl"
    data.write_text('{"text": "one"}\n{"text": "two"}\n')
    res = runner.run("validate_data.py", inputs={"input": str(data), "report": "report.json"}, env=STEP_ENV)
    assert res.code == 0, res.log[-1500:]
    assert_no_leak(runner, res, list(STEP_ENV.values()))


def test_train_keeps_step_tokens_out(runner):
    res = runner.run("train.py", inputs={"model-name": "missing/model-folder", "dataset": "d.jsonl",
                                         "output-dir": "models/x"}, env={**STEP_ENV, "HF_HUB_OFFLINE": "1"})
    assert res.code == 2, res.log[-1500:]
    assert_no_leak(runner, res, list(STEP_ENV.values()))


def eval_inputs(runner, url: str) -> dict[str, str]:
    data = runner.workspace / "eval.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "reference": "4"}) + "\n" for i in range(3)))
    return {"endpoint": url, "eval-data": str(data), "metrics": "accuracy", "retries": "0", "concurrency": "1"}


def test_evaluate_keeps_the_api_key_out_even_when_the_server_echoes_it(runner, hostile):
    host = hostile(echo(400)).removeprefix("http://")
    res = runner.run("evaluate_and_gate.py", inputs=eval_inputs(runner, f"http://bot:{PROM_PASSWORD}@{host}"),
                     env={**STEP_ENV, "OPENAI_API_KEY": API_KEY})
    assert res.code == 2 and "bad request with" in res.log, res.log[-1500:]  # a 4xx: the request is wrong
    assert_no_leak(runner, res, [API_KEY, PROM_PASSWORD, *STEP_ENV.values()])


def test_evaluate_success_keeps_the_api_key_out(runner, hostile):
    url = hostile(lambda req: send(req, 200, json.dumps({"choices": [{"text": "4"}]}).encode()))
    inputs = {**eval_inputs(runner, url), "report": "verdict.json", "min-samples": "1"}
    res = runner.run("evaluate_and_gate.py", "--predictions-out", "preds.jsonl", inputs=inputs,
                     env={**STEP_ENV, "OPENAI_API_KEY": API_KEY})
    assert res.code == 0, res.log[-1500:]
    assert (runner.workspace / "verdict.json").exists() and (runner.workspace / "preds.jsonl").exists()
    assert_no_leak(runner, res, [API_KEY, *STEP_ENV.values()])


@pytest.mark.parametrize("encode", [False, True], ids=["yaml", "base64"])
def test_kubectl_promote_keeps_the_kubeconfig_token_out(runner, hostile, encode):
    config = kubeconfig(hostile(echo(404)), KUBE_TOKEN)
    data = base64.b64encode(config.encode()).decode() if encode else config
    res = runner.run("kubectl_promote.py", inputs={"deployment": "llm", "image": "m:2", "force": "true",
                                                   "kubeconfig-data": data, "request-timeout": "3"}, env=STEP_ENV)
    assert res.code == 2, res.log[-1500:]
    assert_no_leak(runner, res, [KUBE_TOKEN, data, *STEP_ENV.values()])


def test_canary_step_keeps_every_credential_out(runner, hostile):
    api = hostile(echo(404))
    prom = hostile(echo(500)).removeprefix("http://")
    res = runner.run("canary_step.py", inputs={
        "provider": "replicas", "stable": "llm", "canary": "llm-canary", "namespace": "prod",
        "prometheus-url": f"http://reader:{PROM_PASSWORD}@{prom}", "prometheus-token": PROM_TOKEN,
        "kubeconfig-data": kubeconfig(api, KUBE_TOKEN), "kube-timeout": "3s", "report": "canary-report.json"},
        env=STEP_ENV)
    assert res.code in (2, 3), res.log[-1500:]
    assert_no_leak(runner, res, [KUBE_TOKEN, PROM_TOKEN, PROM_PASSWORD, *STEP_ENV.values()])


@pytest.mark.k8s
@pytest.mark.slow
def test_on_a_real_cluster_promote_and_canary_keep_every_credential_out(runner, hostile, k8s_cluster,
                                                                        k8s_namespace):
    from kubernetes import client

    apps = client.AppsV1Api(k8s_cluster.api_client)
    for name, version in (("llm", "v1"), ("llm-canary", "v2")):
        labels = {"app": name}
        apps.create_namespaced_deployment(k8s_namespace, {
            "metadata": {"name": name}, "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{"name": "server", "image": f"m:{version}",
                                                                        "env": [{"name": "MODEL_VERSION",
                                                                                 "value": version}]}]}}}})
    config = Path(k8s_cluster.kubeconfig).read_text()
    secrets = [k8s_cluster.token, PROM_TOKEN, PROM_PASSWORD, *STEP_ENV.values()]
    res = runner.run("kubectl_promote.py", inputs={"deployment": "llm", "namespace": k8s_namespace, "image": "m:v2",
                                                   "model-version": "v2", "force": "true", "dry-run": "true",
                                                   "kubeconfig-data": config}, env=STEP_ENV)
    assert res.code == 0 and "m:v2" in res.log, res.log[-2000:]
    assert_no_leak(runner, res, secrets)
    prom = hostile(echo(500)).removeprefix("http://")
    res = runner.run("canary_step.py", inputs={
        "provider": "replicas", "stable": "llm", "canary": "llm-canary", "namespace": k8s_namespace,
        "prometheus-url": f"http://reader:{PROM_PASSWORD}@{prom}", "prometheus-token": PROM_TOKEN,
        "kubeconfig-data": config, "report": "canary-report.json", "prometheus-timeout": "2s"}, env=STEP_ENV)
    assert res.code == 3 and "Prometheus at http://" in res.log, res.log[-2000:]
    assert (runner.workspace / "canary-report.json").exists()
    assert_no_leak(runner, res, secrets)
