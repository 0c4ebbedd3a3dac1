"""Shared by the kubectl-promote integration tests: manifests, a controllable model-server stand-in, the CLI runner."""
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
        self.on_get = on_get  # called with the path before each GET is answered
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
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
                    self._send(200 if ok else 503, {"status": "ok" if ok else "loading"})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/v1/completions" and state.healthy:
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


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180,
            script: Path = SCRIPT) -> subprocess.CompletedProcess:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "RUNNER_"))}
    run_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=run_env,
                          timeout=timeout)


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

    items = k8s.CoordinationV1Api(cluster.api_client).list_namespaced_lease(namespace).items
    return {lease.metadata.name: k8s.ApiClient().sanitize_for_serialization(lease) for lease in items}


def lease_holder(cluster, namespace: str, kind: str = "deployment", name: str = "llm") -> str:
    lease = leases(cluster, namespace).get(f"llmops-promote-{kind}-{name}")
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
