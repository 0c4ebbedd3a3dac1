"""Shared by the kubectl-promote integration tests: manifests, a controllable model-server stand-in, the CLI runner
and the check of what a run printed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kubectl_promote.py"


def deployment(name: str, image: str, *, replicas: int = 2, deadline: int = 600, labels: dict | None = None,
               containers: list[dict] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas, "progressDeadlineSeconds": deadline, "revisionHistoryLimit": 10,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers or [
                {"name": "llm-model", "image": image, "env": [{"name": "MODEL_VERSION", "value": "v1"}]}]}},
        },
    }


class ModelServer:
    """A local stand-in for the model server's HTTP API whose health a test can turn off (the pods are not real)."""

    def __init__(self, on_get: Any = None) -> None:
        self.healthy = True
        self.down: set[str] = set()  # paths answering 503 (e.g. /health/green)
        self.hits = 0
        # vLLM / TGI style: /health answers an empty 200, /v1/models lists the served ids, completions need "model"
        self.empty_health = False
        self.models: list[str] | None = None  # None: /v1/models is 404
        self.require_model = False
        self.posted: list[dict] = []
        self.on_get = on_get  # called with the path before each GET is answered
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict | None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                state.hits += 1
                if state.on_get:
                    state.on_get(self.path)
                if self.path.startswith("/health"):
                    ok = state.healthy and self.path not in state.down
                    body = None if ok and state.empty_health else {"status": "ok" if ok else "loading"}
                    self._send(200 if ok else 503, body)
                elif self.path == "/v1/models" and state.models is not None:
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in state.models]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                state.posted.append(body)
                if state.require_model and body.get("model") not in (state.models or []):
                    self._send(400, {"error": f"The model `{body.get('model')}` does not exist."})
                elif self.path == "/v1/completions" and state.healthy:
                    self._send(200, {"choices": [{"text": f" echo: {body.get('prompt', '')}", "index": 0}]})
                else:
                    self._send(500, {"error": "model not loaded"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180,
            script: Path = SCRIPT) -> subprocess.CompletedProcess:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "RUNNER_"))}
    run_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=run_env,
                          timeout=timeout)


def check(proc: subprocess.CompletedProcess, code: int, *texts: str) -> None:
    """``proc`` exited ``code`` and printed each of ``texts`` (stdout or stderr), with no traceback."""
    both = proc.stdout + proc.stderr  # (a helper's asserts are not rewritten by pytest: the messages say it all)
    assert proc.returncode == code, f"exit code {proc.returncode}, expected {code}:\n{both}"
    for text in texts:
        assert text in both, f"{text!r} not printed:\n{both}"
    assert "Traceback" not in both, f"a traceback:\n{both}"


def outputs(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """The ``output name=value`` lines a script prints outside a runner."""
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("output ") and "=" in line:
            key, _, value = line[len("output "):].partition("=")
            found[key] = value
    return found


def write_verdict(path: Path, result: str = "pass") -> str:
    path.write_text(json.dumps({"result": result, "reason": "bleu 31.2 >= 30", "metrics": {"bleu": 31.2}}))
    return str(path)


def leases(cluster, namespace: str) -> dict[str, dict]:
    """The Leases in ``namespace`` by name, as the API returns them (holder, renewTime, annotations)."""
    from kubernetes import client as k8s

    resp = k8s.CoordinationV1Api(cluster.api_client).list_namespaced_lease(namespace, _preload_content=False)
    return {lease["metadata"]["name"]: lease for lease in json.loads(resp.data)["items"]}


def lease_holder(cluster, namespace: str, kind: str = "deployment", name: str = "llm") -> str:
    lease = leases(cluster, namespace).get(f"llmops-promote-{kind}-{name}")
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


def kubeconfig_for_role(cluster, namespace: str, rules: list[dict], tmp_path: Path, name: str = "ci") -> str:
    """A kubeconfig whose user is a fresh ServiceAccount bound to a Role with exactly ``rules`` in ``namespace``."""
    import yaml
    from kubernetes import client as k8s

    core, rbac = k8s.CoreV1Api(cluster.api_client), k8s.RbacAuthorizationV1Api(cluster.api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    token = core.create_namespaced_service_account_token(name, namespace, {"spec": {"expirationSeconds": 3600}})
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config["users"] = [{"name": "admin", "user": {"token": token.status.token}}]
    path = tmp_path / f"kubeconfig-{name}"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI as a child process a test can signal or kill (output merged into ``.stdout``)."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "RUNNER_"))}
    run_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=run_env)


def parse_outputs(text: str) -> dict[str, str]:
    return outputs(subprocess.CompletedProcess([], 0, text, ""))
