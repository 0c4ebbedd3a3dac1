"""evaluate-and-gate --endpoint against real local servers: our reference server (bin/serve.py with the tiny
model) and small http.server servers shaped like llama.cpp, vLLM, TGI and FastAPI servers. What a user notices:
latency is the service time (a server that queues shows it only in the throughput part), the server's own error
message with the fix and the right exit code, the served model and X-Model-Version in the verdict (and
kubectl-promote's version check reading it), generation settings recorded and a mismatched baseline refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmops.errors import InfraError, UsageError
from llmops.eval.backends.endpoint import EndpointBackend
from llmops.eval.data import Sample
from tests.infra import tools

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- a small server of any shape

class Shaped(ThreadingHTTPServer):
    """An OpenAI-style server whose answers come from ``answer(path, body) -> (status, doc, headers)``.

    ``serial``: one request served at a time (the others wait: queueing), each taking ``service_s``.
    """

    daemon_threads = True

    def __init__(self, answer, *, service_s: float = 0.0, serial: bool = False, models=("m1",)):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer, self.service_s, self.models = answer, service_s, list(models)
        self.gate = threading.Lock() if serial else None
        self.posts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        srv: Shaped = self.server  # type: ignore[assignment]
        if self.path == "/v1/models" and srv.models:
            return self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in srv.models]})
        return self._send(404, {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}})

    def do_POST(self):  # noqa: N802 - http.server API
        srv: Shaped = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.posts += 1
        if srv.gate is not None:
            with srv.gate:
                time.sleep(srv.service_s)
        else:
            time.sleep(srv.service_s)
        status, doc, headers = srv.answer(self.path, body)
        self._send(status, doc, headers)

    def _send(self, code, doc, headers=None):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def shaped():
    started: list[tuple[Shaped, threading.Thread]] = []

    def start(answer, **kw) -> Shaped:
        srv = Shaped(answer, **kw)
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((srv, thread))
        return srv
    yield start
    for srv, thread in started:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def completion(text="ok", model="m1", **extra):
    return {"model": model, "choices": [{"text": text}], "usage": {"prompt_tokens": 2, "completion_tokens": 3},
            **extra}


def rows(n):
    return [Sample(f"p{i}", "ok", i + 1, prompt=f"question {i}") for i in range(n)]


# ----------------------------------------------------------------------------- latency: service time, not queueing

def test_a_queueing_server_shows_in_throughput_not_in_latency(shaped):
    """One request at a time, 0.1 s each: at concurrency 4 a request waits ~0.4 s, alone it takes 0.1 s."""
    timings = {"prompt_ms": 20.0, "predicted_ms": 80.0}  # llama.cpp's own timing of the request
    srv = shaped(lambda path, body: (200, completion(timings=timings), {}), service_s=0.1, serial=True)
    backend = EndpointBackend(srv.url, concurrency=4, show_progress=False, latency_sample=6, seed=1)
    gens = backend.generate(rows(22))
    from llmops.eval.config import build_config
    from llmops.eval.data import EvalData
    from llmops.eval.runner import build_run, compute_metrics

    data = EvalData(path="x", hash="h", rows=22, samples=rows(22))
    results, _ = compute_metrics(build_run(data, gens, backend="endpoint"), ["latency_p50", "tokens_per_s"],
                                 build_config(None))
    lat, thr = gens.info["latency"], gens.info["throughput"]
    assert len(gens.latency_rows) == 6 and results["latency_p50"].n == 6
    assert 0.09 <= results["latency_p50"].value < 0.25  # the service time
    assert lat["p50_at_concurrency_s"] > 2 * results["latency_p50"].value  # queueing, reported apart, not gated
    assert thr["concurrency"] == 4 and thr["requests"] == 16 and 5 < thr["requests_per_s"] < 11
    assert results["tokens_per_s"].value == pytest.approx(thr["output_tokens_per_s"])
    assert lat["server_reported_rows"] == 22 and lat["server_reported_p50_s"] == pytest.approx(0.1)
    assert srv.posts == 22  # the rows timed alone are not sent twice


def test_few_rows_are_all_timed_alone(shaped):
    srv = shaped(lambda path, body: (200, completion(), {}))
    gens = EndpointBackend(srv.url, concurrency=8, show_progress=False, latency_sample=30).generate(rows(5))
    assert gens.latency_rows == [0, 1, 2, 3, 4]
    assert gens.info["throughput"]["concurrency"] == 1 and gens.info["latency"]["at_concurrency"] is None


# ----------------------------------------------------------------------------- the server's own error, exit codes

VLLM = (404, {"error": {"message": "The model `v9` does not exist.", "type": "NotFoundError", "param": "model",
                        "code": 404}})
VLLM_OLD = (404, {"object": "error", "message": "The model `v9` does not exist.", "type": "NotFoundError",
                  "param": None, "code": 404})
OPENAI = (404, {"error": {"message": "The model 'v9' does not exist", "type": "invalid_request_error",
                          "param": None, "code": "model_not_found"}})
LLAMA_CPP = (400, {"error": {"code": 400, "message": "model 'v9' not found", "type": "invalid_request_error",
                             "param": "model"}})


@pytest.mark.parametrize("status, doc", [VLLM, VLLM_OLD, OPENAI, LLAMA_CPP], ids=["vllm", "vllm-old", "openai",
                                                                                 "llama.cpp"])
def test_a_wrong_model_shows_the_servers_message_and_the_models_it_serves(shaped, status, doc):
    srv = shaped(lambda path, body: (status, doc, {}), models=("v2", "v2-lora"))
    with pytest.raises(UsageError) as err:  # exit 2: a setting to fix, not an outage
        EndpointBackend(srv.url, model="v9", show_progress=False, latency_sample=4).generate(rows(3))
    text = str(err.value)
    message = doc["error"]["message"] if "error" in doc else doc["message"]
    assert message in text and "--endpoint-model 'v9'" in text
    assert "to one it serves: v2, v2-lora" in text and "OpenAI-compatible" not in text
    assert srv.posts == 1  # refused at once, not retried


@pytest.mark.parametrize("status, doc, kind, words", [
    (422, {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048",
           "error_type": "validation"}, UsageError, "sample 'p0' (HTTP 422): Input validation error"),  # TGI
    (400, {"detail": [{"loc": ["body", "max_tokens"], "msg": "Input should be greater than 0"}]}, UsageError,
     "Input should be greater than 0"),  # FastAPI
    (404, {"detail": "Not Found"}, UsageError, "is this an OpenAI-compatible server?"),  # no such path
    (500, {"error": {"message": "CUDA out of memory", "type": "server_error"}}, InfraError,
     "kept failing: HTTP 500: CUDA out of memory"),
], ids=["tgi-422", "fastapi-400", "no-such-path", "5xx"])
def test_other_refusals_map_to_their_exit_codes_with_the_servers_words(shaped, status, doc, kind, words):
    srv = shaped(lambda path, body: (status, doc, {}))
    with pytest.raises(kind, match=None) as err:
        EndpointBackend(srv.url, show_progress=False, retries=1, backoff=0.01, latency_sample=4).generate(rows(2))
    assert words in str(err.value), str(err.value)
    assert err.value.exit_code == (3 if kind is InfraError else 2)


# ----------------------------------------------------------------------------- what the server said it served

def test_the_served_model_and_version_header_are_recorded_and_a_mixed_rollout_names_none(shaped):
    srv = shaped(lambda path, body: (200, completion(model="org/tickets-7b"), {"X-Model-Version": "v2"}))
    backend = EndpointBackend(srv.url, show_progress=False, latency_sample=3)
    gens = backend.generate(rows(6))
    assert backend.identity.version() == "v2"
    assert gens.served["served_model"] == "org/tickets-7b" and gens.served["models_listed"] == [{"id": "m1"}]
    flip = iter(range(1000))
    srv = shaped(lambda path, body: (200, completion(), {"X-Model-Version": f"v{next(flip) % 2 + 1}"}))
    backend = EndpointBackend(srv.url, show_progress=False, latency_sample=3)
    gens = backend.generate(rows(6))
    assert backend.identity.version() is None and gens.served["model_version_headers"] == {"v1": 3, "v2": 3}


# ----------------------------------------------------------------------------- the reference server, end to end

def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        env.pop(name, None)
    return subprocess.run([sys.executable, str(ROOT / "scripts/evaluate_and_gate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference-server")
    port = tools.free_port()
    argv = [sys.executable, str(ROOT / "bin" / "serve.py"), "--model-dir", str(tiny_model_dir),
            "--model-version", "v7", "--model-name", "tickets", "--port", str(port), "--drain-max", "0",
            "--drain-idle", "0"]
    proc = tools.ManagedProcess("serve-v7", argv, tmp / "serve.log",
                                env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        tools.wait_until(lambda: proc.check_alive() or tools.http_ok(f"{url}/health", lambda s, _b: s == 200),
                         90, 0.2, "reference server")
        data = tmp / "eval.jsonl"
        data.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"Route this ticket {i}:", "reference": "billing"})
                                + "\n" for i in range(36)))
        yield url, data
    finally:
        proc.stop(grace=2.0)


def test_reference_server_verdict_names_what_was_served_and_how(reference, tmp_path):
    url, data = reference
    proc = _cli("--endpoint", url, "--eval_data", str(data), "--metrics", "exact_match,latency_p50",
                "--max-new-tokens", "3", "--latency-sample", "6", "--concurrency", "4", "--report", "v.json",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads((tmp_path / "v.json").read_text())
    model = verdict["model"]
    assert model["version"] == "v7" and model["model_version_header"] == "v7" and model["endpoint"] == url
    assert model["served_model"] == "tickets" and model["models_listed"] == [{"id": "tickets", "model_version": "v7"}]
    assert verdict["metrics"]["latency_p50"]["n"] == 6
    assert verdict["backend"]["throughput"]["requests"] == 30 and verdict["backend"]["throughput"]["concurrency"] == 4
    assert verdict["generation"] == {"max_new_tokens": 3, "temperature": 0.0, "stop": [], "api": "completions",
                                     "system_prompt": None}
    assert "is the server's service time: 6 rows sent one at a time" in proc.stdout
    assert "Throughput** at concurrency 4 (30 requests)" in proc.stdout and "output model-version=v7" in proc.stdout
    from llmops.k8s.verdict import check_model, read_verdict  # kubectl-promote reads the same field

    check_model(read_verdict(str(tmp_path / "v.json")), model_version="v7", model_uri=None, force=False)
    with pytest.raises(UsageError, match="is for model version v7, not v8"):
        check_model(read_verdict(str(tmp_path / "v.json")), model_version="v8", model_uri=None, force=False)

    # A candidate generated with other settings is refused before any request; allowed, it warns.
    base = tmp_path / "v.json"
    refused = _cli("--endpoint", url, "--eval_data", str(data), "--metrics", "exact_match", "--max-new-tokens", "5",
                   "--baseline", str(base), "--report", "c.json", cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "max_new_tokens 5 (baseline: 3)" in refused.stdout and "--max-new-tokens 3" in refused.stdout
    assert "allow-setting-changes" in refused.stdout and not (tmp_path / "c.json").exists()
    allowed = _cli("--endpoint", url, "--eval_data", str(data), "--metrics", "exact_match", "--max-new-tokens", "5",
                   "--baseline", str(base), "--report", "c.json", "--allow-setting-changes", "--latency-sample", "4",
                   cwd=tmp_path)
    assert allowed.returncode in (0, 1), allowed.stdout + allowed.stderr
    assert "Generation settings: compared although the generation settings differ" in allowed.stdout
    assert json.loads((tmp_path / "c.json").read_text())["baseline"]["settings"]["status"] == "allowed"


def test_reference_server_wrong_model_is_exit_2_with_its_own_message(reference, tmp_path):
    url, data = reference
    proc = _cli("--endpoint", url, "--eval_data", str(data), "--endpoint-model", "tickets-old", "--metrics",
                "exact_match", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "model 'tickets-old' is not served here" in proc.stdout and "(code model_not_found)" in proc.stdout
    assert "to one it serves: tickets" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- old verdicts, predictions

def test_old_baselines_and_unknown_settings_are_compared_with_a_warning():
    from llmops.eval import settings

    ours = settings.generation_settings(max_new_tokens=8, temperature=0.0, top_p=1.0, samples=rows(2))
    assert settings.check(ours, {"metrics": {}}, "old.json", allow=False)["status"] == "not-recorded"
    assert "records no generation settings" in settings.check(ours, {}, "old.json", allow=False)["note"]
    assert settings.check(None, {"generation": ours}, "b.json", allow=False)["status"] == "not-recorded"
    chat = [Sample("c", "x", 1, messages=[{"role": "system", "content": "Answer in one word."},
                                          {"role": "user", "content": "hi"}])]
    other = settings.generation_settings(max_new_tokens=8, temperature=0.7, top_p=0.9, samples=chat)
    with pytest.raises(UsageError) as err:
        settings.check(other, {"generation": ours}, "b.json", allow=False)
    for words in ("temperature 0.7 (baseline: 0)", "api 'chat' (baseline: 'completions')",
                  "system_prompt '", "--temperature 0"):
        assert words in str(err.value)
