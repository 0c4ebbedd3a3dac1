"""Kubeconfigs that try to run or read something on the runner (kubectl-promote and canary-step), and how the
secrets in them are masked. The API server is a real loopback HTTP server that answers 404 and records the
Authorization header it got; a marker file shows whether a kubeconfig's command ran."""
from __future__ import annotations

import base64
import json

import pytest
import yaml

from tests.security.conftest import send

STATUS_404 = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                         "message": "deployments.apps \"llm\" not found", "code": 404}).encode()
TOKEN = "tok-Secret-7f3a9c1e5b"


@pytest.fixture
def api(hostile):
    seen: list[str] = []

    def handler(req):
        seen.append(req.headers.get("Authorization") or "")
        send(req, 404, STATUS_404)

    return hostile(handler), seen


def kubeconfig(server: str, user: dict) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "ci",
                           "clusters": [{"name": "c", "cluster": {"server": server}}],
                           "contexts": [{"name": "ci", "context": {"cluster": "c", "user": "ci-user",
                                                                   "namespace": "prod"}}],
                           "users": [{"name": "ci-user", "user": user}]})


def exec_user(marker) -> dict:
    cred = json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                       "status": {"token": TOKEN}})
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "sh",
                     "args": ["-c", f"touch {marker}; echo '{cred}'"]}}


def promote(runner, inputs: dict[str, str]):
    return runner.run("kubectl_promote.py", inputs={"deployment": "llm", "image": "m:1", "force": "true",
                                                    "request-timeout": "3", **inputs}, timeout=60)


def canary(runner, inputs: dict[str, str]):
    return runner.run("canary_step.py", inputs={"provider": "replicas", "stable": "llm", "canary": "llm-canary",
                                                "namespace": "prod", "prometheus-url": "http://127.0.0.1:9",
                                                "kube-timeout": "3s", **inputs}, timeout=60)


def provider_user(marker) -> dict:
    return {"auth-provider": {"name": "gcp", "config": {"cmd-path": "sh", "cmd-args": f"-c 'touch {marker}'",
                                                        "access-token": TOKEN}}}


@pytest.mark.parametrize("script", [promote, canary], ids=["kubectl-promote", "canary-step"])
@pytest.mark.parametrize("kind", ["exec", "auth-provider", "tokenFile"])
def test_secret_kubeconfig_may_not_run_or_read_anything(runner, api, script, kind, tmp_path):
    url, seen = api
    marker = tmp_path / "ran"
    token_file = tmp_path / "host-secret"
    token_file.write_text("contents-of-a-local-file-9d8e7f")
    user = {"exec": exec_user(marker), "auth-provider": provider_user(marker),
            "tokenFile": {"tokenFile": str(token_file)}}[kind]
    res = script(runner, {"kubeconfig-data": base64.b64encode(kubeconfig(url, user).encode()).decode()})
    assert res.code == 2, res.log[-2000:]
    assert f"user 'ci-user' has '{kind}'" in res.log and "allow-exec: true" in res.log
    assert not marker.exists() and seen == []
    assert "contents-of-a-local-file" not in "".join(seen)


@pytest.mark.parametrize("script", [promote, canary], ids=["kubectl-promote", "canary-step"])
def test_allow_exec_opts_in_and_the_command_is_logged(runner, api, script, tmp_path):
    url, seen = api
    marker = tmp_path / "ran"
    res = script(runner, {"kubeconfig-data": kubeconfig(url, exec_user(marker)), "allow-exec": "true"})
    assert marker.exists(), res.log[-2000:]
    assert "gets its credentials by running: sh -c" in res.log
    if script is promote:
        assert res.code == 2 and seen and seen[0] == f"Bearer {TOKEN}"


def test_kubeconfig_file_behaves_like_kubectl_and_logs_the_command(runner, api, tmp_path):
    url, seen = api
    marker = tmp_path / "ran"
    path = tmp_path / "config"
    path.write_text(kubeconfig(url, exec_user(marker)))
    res = promote(runner, {"kubeconfig": str(path)})
    assert res.code == 2 and marker.exists(), res.log[-2000:]
    assert f"kubeconfig {path}: user 'ci-user' gets its credentials by running: sh -c" in res.log
    assert seen[0] == f"Bearer {TOKEN}"


def test_token_file_with_a_trailing_newline_is_trimmed_like_kubectl(runner, api, tmp_path):
    url, seen = api
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    path = tmp_path / "config"
    path.write_text(kubeconfig(url, {"tokenFile": str(token_file)}))
    res = promote(runner, {"kubeconfig": str(path)})
    assert res.code == 2 and not res.traceback, res.log[-2000:]
    assert "does not exist" in res.log and seen[0] == f"Bearer {TOKEN}"
    assert f"reads its token from the file {token_file}" in res.log


def test_masks_are_the_secret_values_not_kubeconfig_lines(runner, api, tmp_path):
    url, _ = api
    key = base64.b64encode(b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKeyBodyLine0123456789\n"
                           b"-----END EC PRIVATE KEY-----\n").decode()
    data = kubeconfig(url, {"token": TOKEN, "client-key-data": key})
    for secret in (data, base64.b64encode(data.encode()).decode()):
        res = promote(runner, {"kubeconfig-data": secret})
        masks = [line.split("::add-mask::", 1)[1] for line in res.log.splitlines() if "::add-mask::" in line]
        assert TOKEN in masks and key in masks and "MHcCAQEEIKeyBodyLine0123456789" in masks, masks
        assert not any(m.strip() in ("kind: Config", "apiVersion: v1") or ":" in m and TOKEN in m for m in masks)
        assert not any(m.startswith(" ") for m in masks)
