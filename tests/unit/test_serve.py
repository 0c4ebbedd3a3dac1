"""The model server with the tiny model and the echo fake: OpenAI answers, /health, /metrics, feedback, faults."""
from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import pytest
import requests

from llmops.errors import InputError, UsageError
from llmops.monitoring.logs import RequestLogger
from llmops.serve.faults import Faults
from llmops.serve.generators import EchoGenerator, SamplingParams, TransformersGenerator, read_model_info
from llmops.serve.server import ModelServer

T = 60  # generous HTTP timeout: the machine is shared


def _server(generator, version: str, **kw) -> ModelServer:
    """A server on 127.0.0.1:0 whose JSON logs go to a buffer (``server.log_stream``) instead of stderr."""
    stream = io.StringIO()
    info = read_model_info(getattr(generator, "model_dir", None), version=version)
    server = ModelServer(generator, info, logger=RequestLogger(f"test.serve.{version}", stream=stream), **kw)
    server.log_stream = stream  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="module")
def model_copy(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "tiny"
    shutil.copytree(tiny_model_dir, path)
    (path / "llmops-model.json").write_text(json.dumps({"model_version": "tiny-v7", "model_name": "tiny"}))
    return path


@pytest.fixture(scope="module")
def tiny_server(model_copy):
    server = _server(TransformersGenerator(model_copy, device="cpu"), None).start()
    try:
        server.wait_ready(300)
        yield server
    finally:
        server.stop()


def _metric(server: ModelServer, name: str, **labels: str) -> float:
    return server.metrics.value(name, **labels) or 0.0


def test_model_info_reads_llmops_model_json_defensively(model_copy, tmp_path):
    assert read_model_info(model_copy).version == "tiny-v7"
    assert read_model_info(model_copy, version="override").version == "override"
    broken = tmp_path / "my-model"
    broken.mkdir()
    (broken / "llmops-model.json").write_text("{not json")
    warnings: list[str] = []
    info = read_model_info(broken, warn=warnings.append)
    assert (info.version, info.name) == ("my-model", "my-model") and "could not read" in warnings[0]
    assert read_model_info(tmp_path).version == tmp_path.name  # no file at all


def test_completion_with_the_tiny_model(tiny_server):
    before = _metric(tiny_server, "llm_requests_total", endpoint="completions", status="ok")
    r = requests.post(tiny_server.url + "/v1/completions",
                      json={"model": "tiny", "prompt": "What is two plus two?", "max_tokens": 5}, timeout=T)
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "tiny-v7"
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny"
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert _metric(tiny_server, "llm_requests_total", endpoint="completions", status="ok") == before + 1
    assert _metric(tiny_server, "llm_time_to_first_token_seconds_count") >= 1


def test_greedy_generation_is_deterministic(tiny_server):
    payload = {"prompt": "The quick brown fox", "max_tokens": 6}
    texts = {requests.post(tiny_server.url + "/v1/completions", json=payload, timeout=T).json()["choices"][0]["text"]
             for _ in range(2)}
    assert len(texts) == 1


def test_chat_uses_the_chat_template(tiny_server):
    r = requests.post(tiny_server.url + "/v1/chat/completions", timeout=T, json={
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    prompt = tiny_server.generator.render_chat([{"role": "user", "content": "hi"}])
    assert prompt.endswith("<|assistant|>")
    assert body["usage"]["prompt_tokens"] > len("Be brief. hi".split())  # template tokens are counted too


def test_health_and_metrics_show_what_was_served(tiny_server):
    health = requests.get(tiny_server.url + "/health", timeout=T)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model_version": "tiny-v7", "model_name": "tiny",
                             "generator": "transformers"}
    requests.post(tiny_server.url + "/v1/completions", json={"prompt": "one two", "max_tokens": 3}, timeout=T)
    text = requests.get(tiny_server.url + "/metrics", timeout=T).text
    ok = [line for line in text.splitlines()
          if line.startswith('llm_requests_total{endpoint="completions",model_version="tiny-v7",status="ok"}')]
    assert ok and float(ok[0].split()[-1]) >= 1
    assert 'llm_model_loaded{model_version="tiny-v7"} 1.0' in text
    assert "llm_output_tokens_total" in text and "llm_request_duration_seconds_bucket" in text


@pytest.mark.parametrize("path, payload, status, param", [
    ("/v1/completions", {"prompt": 3}, 400, "prompt"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "stream": "yes"}, 400, "stream"),
    ("/v1/completions", {"prompt": "x", "n": 17}, 400, "n"),
    ("/v1/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 4000}, 400, "prompt"),  # beyond the tiny model's context
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
])
def test_bad_requests_get_openai_errors_and_count_as_invalid(tiny_server, path, payload, status, param):
    endpoint = "chat" if "chat" in path else "completions"
    before = _metric(tiny_server, "llm_requests_total", endpoint=endpoint, status="invalid")
    r = requests.post(tiny_server.url + path, json=payload, timeout=T)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and err["message"]
    assert _metric(tiny_server, "llm_requests_total", endpoint=endpoint, status="invalid") == before + 1


def test_malformed_json_and_unknown_routes(tiny_server):
    r = requests.post(tiny_server.url + "/v1/completions", data=b"{oops", timeout=T)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    assert requests.get(tiny_server.url + "/nope", timeout=T).status_code == 404


def test_feedback_moves_the_quality_gauge(tiny_server):
    for score in (1.0, 0.0):
        r = requests.post(tiny_server.url + "/v1/feedback", json={"score": score}, timeout=T)
        assert r.status_code == 200
    assert r.json()["quality_score"] == pytest.approx(0.5)
    assert 'llm_quality_score{model_version="tiny-v7"} 0.5' in requests.get(tiny_server.url + "/metrics",
                                                                           timeout=T).text
    assert requests.post(tiny_server.url + "/v1/feedback", json={"score": 7}, timeout=T).status_code == 400


# ------------------------------------------------------------------ echo server, loading state, faults


class _SlowLoad(EchoGenerator):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def load(self) -> None:
        assert self.release.wait(60)


def test_health_is_503_while_loading():
    gen = _SlowLoad()
    with _server(gen, "v-loading") as server:
        r = requests.get(server.url + "/health", timeout=T)
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert requests.post(server.url + "/v1/completions", json={"prompt": "a"}, timeout=T).status_code == 503
        gen.release.set()
        server.wait_ready(30)
        assert requests.get(server.url + "/health", timeout=T).status_code == 200


def test_failed_load_is_reported_by_health_and_wait_ready(tmp_path):
    with _server(TransformersGenerator(tmp_path / "missing"), "v") as server:
        with pytest.raises(InputError, match="does not exist"):
            server.wait_ready(30)
        r = requests.get(server.url + "/health", timeout=T)
        assert r.status_code == 503 and r.json()["status"] == "failed" and "does not exist" in r.json()["error"]


def test_echo_generator_is_deterministic_and_counts_words():
    with _server(EchoGenerator(), "v-echo") as server:
        server.wait_ready(30)
        out = requests.post(server.url + "/v1/completions", json={"prompt": "one two three four", "max_tokens": 2},
                            timeout=T).json()
        assert (out["choices"][0]["text"], out["choices"][0]["finish_reason"]) == ("one two", "length")
        assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
        out = requests.post(server.url + "/v1/completions", timeout=T,
                            json={"prompt": "a b STOP c", "max_tokens": 10, "stop": "STOP"}).json()
        assert out["choices"][0]["text"] == "a b " and out["choices"][0]["finish_reason"] == "stop"


def test_text_tracker_holds_back_a_possible_stop_and_never_counts_eos():
    from llmops.serve.engines import TextTracker

    tracker = TextTracker(SamplingParams(max_tokens=10, stop=("END",)), "".join)
    sent = [tracker.push(t) for t in ("ab", "cE", "N")]
    assert sent == ["ab", "c", ""]  # "E", then "EN", could start "END": held back
    assert tracker.push("x") == "ENx"  # it did not
    assert tracker.eos() == "" and (tracker.text, tracker.output_tokens, tracker.finish_reason) == ("abcENx", 4,
                                                                                                   "stop")
    tracker = TextTracker(SamplingParams(max_tokens=10, stop=("END",)), "".join)
    assert [tracker.push(t) for t in ("ab", "cE", "NDzz")] == ["ab", "c", ""]
    assert (tracker.text, tracker.output_tokens) == ("abc", 2)  # the token that only held the stop is not counted


def test_injected_errors_follow_the_seed_and_count_as_errors():
    faults = Faults.from_env({"LLMOPS_FAULT_ERROR_RATE": "0.3", "LLMOPS_FAULT_SEED": "7"})
    twin = Faults(error_rate=0.3, seed=7)
    expected = [twin.should_fail() for _ in range(40)]
    with _server(EchoGenerator(), "v-fault", faults=faults) as server:
        server.wait_ready(30)
        codes = [requests.post(server.url + "/v1/completions", json={"prompt": "a b"}, timeout=T).status_code
                 for _ in range(40)]
        assert codes == [500 if fail else 200 for fail in expected]
        assert 5 <= codes.count(500) <= 20
        assert server.metrics.value("llm_requests_total", endpoint="completions", status="error") == \
            codes.count(500)
        assert requests.get(server.url + "/health", timeout=T).status_code == 200  # health is never faulted
        logged = [json.loads(line) for line in server.log_stream.getvalue().splitlines()]
        statuses = [e["status"] for e in logged if e.get("event") == "request"]
        assert statuses == codes
        assert all("prompt" not in e and "a b" not in json.dumps(e) for e in logged)


def test_injected_latency_and_pinned_quality():
    faults = Faults.from_env({"LLMOPS_FAULT_LATENCY_MS": "300", "LLMOPS_FAULT_QUALITY_SCORE": "0.2"})
    with _server(EchoGenerator(), "v-slow", faults=faults) as server:
        server.wait_ready(30)
        requests.post(server.url + "/v1/completions", json={"prompt": "a"}, timeout=T)
        requests.post(server.url + "/v1/feedback", json={"score": 1.0}, timeout=T)
        assert server.metrics.value("llm_request_duration_seconds_sum") >= 0.3
        assert server.metrics.value("llm_request_duration_seconds_bucket", le="0.25") == 0
        assert server.metrics.value("llm_quality_score") == 0.2


@pytest.mark.parametrize("env, message", [
    ({"LLMOPS_FAULT_ERROR_RATE": "lots"}, "LLMOPS_FAULT_ERROR_RATE must be a number"),
    ({"LLMOPS_FAULT_ERROR_RATE": "1.5"}, "from 0 to 1"),
    ({"LLMOPS_FAULT_LATENCY_MS": "-5"}, ">= 0"),
    ({"LLMOPS_FAULT_SEED": "x"}, "LLMOPS_FAULT_SEED must be an integer"),
])
def test_bad_fault_settings_are_errors(env, message):
    with pytest.raises(UsageError, match=message):
        Faults.from_env(env)


def test_costs_follow_the_price_table():
    from decimal import Decimal

    from llmops.monitoring.cost import PriceTable

    prices = PriceTable.from_dict({"models": {"v-cost": {"input_per_million": 1e6, "output_per_million": 2e6}}})
    with _server(EchoGenerator(), "v-cost", prices=prices) as server:
        server.wait_ready(30)
        requests.post(server.url + "/v1/completions", json={"prompt": "a b c", "max_tokens": 2}, timeout=T)
        assert server.metrics.value("llm_cost_usd_total") == pytest.approx(3 * 1 + 2 * 2)
        summary = requests.get(server.url + "/v1/costs", timeout=T).json()
        assert Decimal(summary["by_version"]["v-cost"]["total_cost"]) == 7


# ------------------------------------------------------------------ bin/serve.py


ROOT = Path(__file__).resolve().parents[2]


def _serve_cmd(*args: str):
    import os
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return [sys.executable, str(ROOT / "bin" / "serve.py"), *args], env


def test_serve_script_runs_until_sigterm(serve_script):
    import signal

    proc, url = serve_script("drill-v2", "--echo")  # it says "listening on http://127.0.0.1:…" and ready first
    r = requests.post(url + "/v1/chat/completions", timeout=T,
                      json={"messages": [{"role": "user", "content": "ping pong"}], "max_tokens": 1})
    assert r.json()["choices"][0]["message"]["content"] == "ping"
    assert r.json()["model"] == "drill-v2"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("args, env_extra, message", [
    ([], {}, "give exactly one of --model-dir DIR or --echo"),
    (["--model-dir", "/nonexistent/model"], {}, "model folder /nonexistent/model does not exist"),
    (["--echo"], {"LLMOPS_FAULT_ERROR_RATE": "lots"}, "LLMOPS_FAULT_ERROR_RATE must be a number"),
    (["--echo", "--quality-score", "3"], {}, "--quality-score must be from 0 to 1"),
])
def test_serve_script_bad_input_exits_2_with_the_fix(args, env_extra, message):
    import subprocess

    cmd, env = _serve_cmd(*args, "--port", "0")
    proc = subprocess.run(cmd, env={**env, **env_extra}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_server_that_never_started_stops_cleanly():
    server = _server(EchoGenerator(), "v-unstarted")
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/health", timeout=5)


def test_model_files_are_readable_by_others_and_an_unreadable_one_is_named(tiny_model_dir):
    import os
    import stat
    import subprocess
    import sys
    import tempfile

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tiny_model_dir.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes  # what build_tiny_model / the train action write
    shared = Path(tempfile.mkdtemp(prefix="llmops-store-"))  # a shared model store another user can traverse
    shared.chmod(0o755)
    folder = shared / "model"
    shutil.copytree(tiny_model_dir, folder)
    folder.chmod(0o755)
    weights = folder / "model.safetensors"
    weights.chmod(0o600)  # what save_pretrained leaves behind without the fix
    probe = ("import os, sys; from llmops.errors import InputError; from llmops.serve.generators import "
             "TransformersGenerator\n"
             "if os.geteuid() == 0: os.setgid(65534); os.setuid(65534)  # root reads anything: be another user\n"
             "try: TransformersGenerator(sys.argv[1]).load()\n"
             "except InputError as e: print(e.message, '|', e.hint)")
    if os.geteuid() != 0:
        weights.chmod(0)
    try:
        out = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        shutil.rmtree(shared)
    assert f"cannot read {weights}: Permission denied" in out.stdout, out.stdout + out.stderr
    assert "chmod -R a+rX" in out.stdout
