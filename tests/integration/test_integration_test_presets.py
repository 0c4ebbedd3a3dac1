"""bin/integration_test.py against real local servers shaped like vLLM, TGI, SGLang, Triton and an OpenAI-
compatible server with no health path (tests/infra/exporters.py): the preset's health path, chat smoke tests, the
server's own error body, and a 404 health path that fails at once instead of retrying for the whole timeout."""
from __future__ import annotations

import time

import pytest

from tests.infra.exporters import Exporter
from tests.integration.promote_helpers import ROOT, check, outputs, run_cli

SMOKE = ROOT / "bin" / "integration_test.py"


@pytest.mark.parametrize(("kind", "preset", "api"), [("vllm", "vllm", "chat"), ("tgi", "tgi", "completions"),
                                                     ("sglang", "sglang", "chat"), ("triton", "triton", "chat"),
                                                     ("vllm", "openai", "chat")])
def test_each_preset_finds_its_health_path_and_smoke_tests(kind, preset, api):
    with Exporter(kind, pod="llm-5d8f9c7b4-x2x4q", model="v2", health=preset != "openai") as server:
        proc = run_cli("--endpoint", server.url, "--preset", preset, "--api", api, "--model", "v2",
                       "--prompt", "Say hi.", "--timeout", "5", script=SMOKE)
        check(proc, 0, "healthy after 1 tries", "Hello from v2")
        assert outputs(proc)["result"] == "pass"


def test_missing_health_path_fails_fast_and_names_the_fix():
    with Exporter("vllm", pod="llm-5d8f9c7b4-x2x4q", model="v2", health=False) as server:  # like llama.cpp
        start = time.monotonic()
        proc = run_cli("--endpoint", server.url, "--timeout", "60", script=SMOKE)
        check(proc, 1, "answered 404", "has no such path", "--preset")
        assert time.monotonic() - start < 20  # not the 60 s timeout


def test_wrong_model_shows_the_servers_own_error():
    with Exporter("vllm", pod="llm-5d8f9c7b4-x2x4q", model="v2") as server:
        proc = run_cli("--endpoint", server.url, "--preset", "vllm", "--api", "chat", "--model", "v1",
                       script=SMOKE)
        check(proc, 1, "answered 404", "The model `v1` does not exist", "1 of 1 integration checks failed")
