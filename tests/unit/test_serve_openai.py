"""The model server through the official ``openai`` client: every route, streaming, batching, stop sequences, token
accounting, n > 1, empty prompts and context-length errors (tiny model and echo fake)."""
from __future__ import annotations

import io
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from llmops.monitoring.logs import RequestLogger
from llmops.serve.generators import EchoGenerator, TransformersGenerator, read_model_info
from llmops.serve.server import ModelServer

PROMPTS = ["The quick brown fox", "What is two plus two?", "Translate hello", "hi", "What color is coal?",
           "one two three", "Name a fruit", "Why"]


def _start(generator, version: str | None, **kw) -> ModelServer:
    info = read_model_info(getattr(generator, "model_dir", None), version=version)
    server = ModelServer(generator, info, logger=RequestLogger(f"test.openai.{version}", stream=io.StringIO()), **kw)
    server.start().wait_ready(300)
    return server


def _client(server: ModelServer, root: bool = False) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + ("" if root else "/v1"), api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("openai") / "tiny"
    shutil.copytree(tiny_model_dir, path)
    (path / "llmops-model.json").write_text(json.dumps({"model_version": "tiny-v8", "model_name": "tiny"}))
    server = _start(TransformersGenerator(path, device="cpu"), None)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def echo():
    server = _start(EchoGenerator(), "echo-v1")
    yield server
    server.stop()


def _complete(client, prompt, **kw):
    kw.setdefault("model", "tiny")
    return client.completions.create(prompt=prompt, **kw)


def test_every_route_through_the_openai_client(echo):
    client, root = _client(echo), _client(echo, root=True)
    assert [m.id for m in client.models.list()] == ["echo-v1"]
    raw = client.completions.with_raw_response.create(model="echo-v1", prompt="a b c", max_tokens=2)
    assert raw.headers["x-model-version"] == "echo-v1"
    assert raw.parse().choices[0].text == "a b" and raw.parse().usage.completion_tokens == 2
    chat = client.chat.completions.create(model="echo-v1", max_tokens=5,
                                          messages=[{"role": "user", "content": "ping pong"}])
    assert chat.choices[0].message.content == "ping pong" and chat.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="echo-v1", stream=True, max_tokens=5,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "x y z"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "x y z"
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].usage.completion_tokens == 3
    streamed = list(client.completions.create(model="echo-v1", prompt="u v", stream=True))
    assert "".join(c.choices[0].text for c in streamed) == "u v" and streamed[-1].choices[0].finish_reason == "stop"
    assert root.get("/health", cast_to=object)["model_version"] == "echo-v1"
    assert root.post("/v1/feedback", body={"score": 1.0}, cast_to=object)["quality_score"] == 1.0
    assert "by_version" in root.get("/v1/costs", cast_to=object)
    metrics = root.get("/metrics", cast_to=str)
    assert 'llm_requests_total{endpoint="chat",model_version="echo-v1",status="ok"} 2.0' in metrics
    with pytest.raises(openai.NotFoundError):
        root.get("/nope", cast_to=object)


def test_streamed_text_and_usage_equal_the_whole_answer(tiny):
    client = _client(tiny)
    for prompt in PROMPTS[:3]:
        whole = _complete(client, prompt, max_tokens=10)
        chunks = list(_complete(client, prompt, max_tokens=10, stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
        assert chunks[-1].usage == whole.usage
    messages = [{"role": "user", "content": "hi"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8)
    deltas = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=8, stream=True)]
    assert "".join(deltas) == whole.choices[0].message.content
    assert tiny.metrics.value("llm_time_to_first_token_seconds_count") >= 5


def test_concurrent_requests_are_batched_with_the_same_greedy_text(tiny):
    client = _client(tiny)
    alone = [_complete(client, p, max_tokens=12).choices[0].text for p in PROMPTS]
    tiny.engine.batch_sizes.clear()
    barrier = threading.Barrier(len(PROMPTS))

    def together(prompt):
        barrier.wait()
        return _complete(_client(tiny), prompt, max_tokens=12).choices[0].text

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        batched = list(pool.map(together, PROMPTS))
    assert batched == alone
    assert max(tiny.engine.batch_sizes) >= 4  # they really were decoded together


def test_stop_sequence_ends_generation_and_counts_only_returned_tokens(tiny):
    client = _client(tiny)
    full = _complete(client, PROMPTS[0], max_tokens=12).choices[0].text
    stop = full[6:9]
    assert stop and full.find(stop) > 0
    before = tiny.metrics.value("llm_output_tokens_total")
    cut = _complete(client, PROMPTS[0], max_tokens=12, stop=[stop, "never appears"])
    assert cut.choices[0].text == full[:full.find(stop)] and cut.choices[0].finish_reason == "stop"
    assert 0 < cut.usage.completion_tokens < 12
    assert tiny.metrics.value("llm_output_tokens_total") == before + cut.usage.completion_tokens
    streamed = list(_complete(client, PROMPTS[0], max_tokens=12, stop=stop, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text  # no part of the stop leaks


def test_stop_sequence_stops_the_echo_generator_early():
    server = _start(EchoGenerator(token_delay_s=0.2), "echo-slow")
    try:
        client = _client(server)
        prompt = " ".join(f"w{i}" for i in range(30))
        start = time.perf_counter()
        r = client.completions.create(model="echo-slow", prompt=prompt, max_tokens=30, stop=[" w3"])
        elapsed = time.perf_counter() - start
        assert r.choices[0].text == "w0 w1 w2" and r.usage.completion_tokens == 3
        assert elapsed < 3.0  # 4 words generated (0.8 s), not 30 (6 s)
    finally:
        server.stop()


def test_eos_is_neither_returned_nor_counted(tiny_model_dir, tmp_path):
    """A model whose EOS is the token it generates first: the answer is empty and counts 0 tokens (not 1)."""
    path = tmp_path / "eos-model"
    shutil.copytree(tiny_model_dir, path)
    server = _start(TransformersGenerator(path, device="cpu"), "v-eos")
    try:
        import torch

        gen = server.generator
        with torch.inference_mode():
            first = int(gen.model(torch.tensor([gen.encode(PROMPTS[1], 1, chat=False)])).logits[0, -1].argmax())
        gen.eos_ids.add(first)
        r = _complete(_client(server), PROMPTS[1], max_tokens=8, model="v-eos")
        assert (r.choices[0].text, r.choices[0].finish_reason, r.usage.completion_tokens) == ("", "stop", 0)
    finally:
        server.stop()


def test_empty_prompts_generate_from_bos_and_the_chat_template(tiny):
    client = _client(tiny)
    r = _complete(client, "", max_tokens=3)
    assert r.usage.prompt_tokens == 1 and r.usage.completion_tokens == 3
    chat = client.chat.completions.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": ""}])
    assert chat.usage.prompt_tokens > 1 and chat.usage.completion_tokens == 2


def test_context_length_errors_carry_the_openai_code(tiny):
    client = _client(tiny)
    with pytest.raises(openai.BadRequestError) as caught:
        _complete(client, "hello", max_tokens=4000)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "prompt"
    assert "maximum context length is 512 tokens" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", max_tokens=4000, messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"


def test_n_choices_when_sampling_are_reproducible_with_a_seed(tiny):
    client = _client(tiny)
    kw = {"max_tokens": 8, "n": 3, "temperature": 1.0, "seed": 11}
    first = _complete(client, PROMPTS[2], **kw)
    again = _complete(client, PROMPTS[2], **kw)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert len({c.text for c in first.choices}) > 1  # the choices are different samples
    assert first.usage.completion_tokens == 24
    chunks = list(_complete(client, PROMPTS[2], stream=True, **kw))
    texts = ["".join(c.choices[0].text for c in chunks if c.choices[0].index == i) for i in range(3)]
    assert texts == [c.text for c in first.choices]
