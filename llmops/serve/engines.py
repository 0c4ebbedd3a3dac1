"""Generation engines: continuous batching over a transformers model, and the echo fake on the event loop.

A request becomes one ``Choice`` per output sequence (prompts x n). A choice's ``TextTracker`` owns the token
accounting every engine shares:

- a token is pushed, the text so far decoded, and the new part sent as a delta; EOS ends the choice with
  ``stop`` and is neither returned nor counted;
- a stop sequence ends generation at once (it is a stopping criterion, not a cut afterwards): the text ends before
  it, and only the tokens that carry returned text are counted. While the text ends in a prefix of a stop sequence
  (or in half a UTF-8 character) that tail is held back, so a stream never shows part of a stop sequence;
- ``max_tokens`` tokens end it with ``length``.

``TransformersEngine`` runs one thread that owns the model. A new choice is prefilled alone (so its first token is
exactly the unbatched one), then joins the running batch at the next decode step: the batch's KV cache is
left-padded to a common length and the padding masked, with each row's own position ids, so greedy text is the
same as one request at a time. Finished or cancelled rows leave the batch at once. Sampling uses one
``torch.Generator`` per choice (seeded by ``seed`` + choice index), so a seeded request does not depend on what it
was batched with. Models whose cache is not a plain per-layer key/value cache run one choice at a time.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from llmops.serve.generators import EchoGenerator, SamplingParams, TransformersGenerator

log = logging.getLogger(__name__)


class TextTracker:
    """Tokens in, text deltas out, with EOS / stop-sequence / length handling (see the module docstring)."""

    def __init__(self, params: SamplingParams, decode: Callable[[list[Any]], str]):
        self.params = params
        self.decode = decode
        self.tokens: list[Any] = []
        self.text = ""  # what has been returned so far
        self.output_tokens = 0
        self.finish_reason: str | None = None

    def push(self, token: Any, *, last: bool = False) -> str:
        """Add one generated token; returns the text to send now (maybe ""). ``last``: the source has no more."""
        self.tokens.append(token)
        full = self.decode(self.tokens)
        cut = min((i for i in (full.find(s) for s in self.params.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            keep = len(self.tokens)
            while keep > 0 and len(self.decode(self.tokens[:keep - 1])) >= cut:
                keep -= 1
            return self._finish("stop", full[:cut], keep)
        if last:
            return self._finish("stop", full, len(self.tokens))
        if len(self.tokens) >= self.params.max_tokens:
            return self._finish("length", full, len(self.tokens))
        hold = 1 if full.endswith("\ufffd") else 0
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, len(full)), hold, -1):
                if full.endswith(stop[:k]):
                    hold = k
                    break
        return self._advance(full[:len(full) - hold])

    def eos(self) -> str:
        """The model ended the sequence: return what was held back."""
        return self._finish("stop", self.decode(self.tokens), len(self.tokens))

    def _advance(self, text: str) -> str:
        if not text.startswith(self.text):  # decoding changed earlier characters: send nothing until it settles
            return ""
        delta, self.text = text[len(self.text):], text
        return delta

    def _finish(self, reason: str, text: str, tokens: int) -> str:
        self.finish_reason = reason
        self.output_tokens = tokens
        delta = self._advance(text) if text.startswith(self.text) else ""
        self.text = text
        return delta


class RequestSink:
    """Events of one request's choices, handed from an engine (any thread) to the request's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.thread_id = threading.get_ident()  # made on the loop's thread
        self.events: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()

    def put(self, index: int, kind: str, value: str) -> None:
        if threading.get_ident() == self.thread_id:  # the echo engine runs on the loop: no wake-up write needed
            self.events.put_nowait((index, kind, value))
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (index, kind, value))
        except RuntimeError:  # the event loop is closed: the server stopped and nobody is waiting any more
            pass


class Choice:
    """One output sequence of a request; engines call ``push``/``eos``/``fail``, the server reads the rest."""

    def __init__(self, index: int, prompt: Any, n_prompt_tokens: int, params: SamplingParams, sink: RequestSink,
                 decode: Callable[[list[Any]], str], chat: list[dict[str, str]] | None = None):
        self.index = index
        self.prompt = prompt  # token ids (transformers) or the prompt text (echo)
        self.chat = chat
        self.n_prompt_tokens = n_prompt_tokens
        self.params = params
        self.sink = sink
        self.tracker = TextTracker(params, decode)
        self.cancelled = False
        self.first_token_at: float | None = None
        self.done_at: float | None = None
        self.error: str | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None

    def push(self, token: Any, *, last: bool = False) -> bool:
        """Add a token; True once the choice is finished."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        delta = self.tracker.push(token, last=last)
        if delta:
            self.sink.put(self.index, "delta", delta)
        if self.tracker.finish_reason:
            self._end("done", self.tracker.finish_reason)
        return self.done

    def eos(self) -> None:
        delta = self.tracker.eos()
        if delta:
            self.sink.put(self.index, "delta", delta)
        self._end("done", "stop")

    def fail(self, message: str) -> None:
        self.error = message
        self._end("error", message)

    def _end(self, kind: str, value: str) -> None:
        if self.done_at is None:
            self.done_at = time.perf_counter()
            self.sink.put(self.index, kind, value)


class EchoEngine:
    """The echo fake: each choice is a task on the event loop, one word per ``token_delay_s``."""

    def __init__(self, generator: EchoGenerator):
        self.generator = generator
        self._tasks: set[asyncio.Task] = set()

    def submit(self, choices: list[Choice]) -> None:
        for choice in choices:
            task = asyncio.get_running_loop().create_task(self._run(choice))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, choice: Choice) -> None:
        words = self.generator.answer_words(choice.prompt, choice.chat)
        if not words:
            choice.eos()
            return
        for i, word in enumerate(words):
            if self.generator.token_delay_s:
                await asyncio.sleep(self.generator.token_delay_s)
            if choice.cancelled:
                choice.fail("cancelled")
                return
            if choice.push(word, last=i == len(words) - 1):
                return

    def close(self) -> None:
        return None  # the tasks live on the server's event loop, which cancels them when it ends


class _Row:
    __slots__ = ("choice", "last", "pos", "rng")

    def __init__(self, choice: Choice, last: int, pos: int, rng: Any):
        self.choice, self.last, self.pos, self.rng = choice, last, pos, rng


class TransformersEngine:
    """Continuous batching on one thread that owns the model (see the module docstring)."""

    def __init__(self, generator: TransformersGenerator, *, max_batch: int = 16):
        self.generator = generator
        self.max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[Choice] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.batch_sizes: list[int] = []  # decode-step batch sizes, newest last (bounded)
        self._can_merge: bool | None = None  # known after the first prefill
        self._thread = threading.Thread(target=self._run, name="llmops-engine", daemon=True)
        self._thread.start()

    def submit(self, choices: list[Choice]) -> None:
        for choice in choices:
            self._queue.put(choice)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        import torch

        with torch.inference_mode():  # thread-local: the cache surgery below happens in inference mode too
            self._loop()

    def _loop(self) -> None:
        rows: list[_Row] = []
        state: dict[str, Any] = {"cache": None, "mask": None}
        while not self._stop.is_set():
            new: list[Choice] = []
            if not rows:
                try:
                    new.append(self._queue.get(timeout=0.1))
                except queue.Empty:
                    continue
            while len(rows) + len(new) < (self.max_batch if self._can_merge else 1):
                try:
                    new.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                for choice in new:
                    self._admit(choice, rows, state)
                if rows:
                    self._step(rows, state)
            except Exception as exc:  # noqa: BLE001 - a failed step fails its requests, not the server
                log.exception("generation step failed")
                for choice in [r.choice for r in rows] + [c for c in new if not c.done]:
                    choice.fail(f"generation failed: {type(exc).__name__}: {exc}")
                rows.clear()
                state.update(cache=None, mask=None)
        for choice in [r.choice for r in rows]:
            choice.fail("the server is shutting down")
        while True:
            try:
                self._queue.get_nowait().fail("the server is shutting down")
            except queue.Empty:
                break

    def _forward(self, cache: Any, **inputs: Any) -> Any:
        import inspect

        model = self.generator.model
        if not hasattr(self, "_cache_kw"):
            names = inspect.signature(model.forward).parameters
            self._cache_kw = "cache" if "cache" in names else "past_key_values"
            self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in names else {}
        return model(**inputs, **{self._cache_kw: cache}, **self._last_only, use_cache=True)

    def _admit(self, choice: Choice, rows: list[_Row], state: dict[str, Any]) -> None:
        import torch
        from transformers import DynamicCache

        if choice.cancelled:
            choice.fail("cancelled")
            return
        gen = self.generator
        ids = choice.prompt
        rng = None
        if choice.params.temperature > 0:
            rng = torch.Generator(device="cpu")
            if choice.params.seed is not None:
                rng.manual_seed(choice.params.seed + choice.index)
            else:
                rng.seed()
        with torch.inference_mode():
            cache = DynamicCache(config=gen.model.config)
            out = self._forward(cache, input_ids=torch.tensor([ids], device=gen.device),
                                position_ids=torch.arange(len(ids), device=gen.device)[None])
            token = _pick(out.logits[0, -1], choice.params, rng)
        if self._can_merge is None:
            self._can_merge = self._mergeable(cache)  # if not, one choice at a time
        if self._finish_token(choice, token):
            return
        row_mask = torch.ones(1, len(ids), dtype=torch.long, device=gen.device)
        if state["cache"] is None:
            state["cache"], state["mask"] = cache, row_mask
        else:
            length = max(state["mask"].shape[1], len(ids))
            for big, one in zip(state["cache"].layers, cache.layers, strict=True):
                big.keys = torch.cat([_pad_kv(big.keys, length), _pad_kv(one.keys, length)])
                big.values = torch.cat([_pad_kv(big.values, length), _pad_kv(one.values, length)])
            state["mask"] = torch.cat([_pad_mask(state["mask"], length), _pad_mask(row_mask, length)])
        rows.append(_Row(choice, token, len(ids), rng))

    @staticmethod
    def _mergeable(cache: Any) -> bool:
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))

    def _finish_token(self, choice: Choice, token: int) -> bool:
        if token in self.generator.eos_ids:
            choice.eos()
            return True
        return choice.push(token)

    def _step(self, rows: list[_Row], state: dict[str, Any]) -> None:
        import torch

        dev = self.generator.device
        mask = torch.cat([state["mask"], state["mask"].new_ones(len(rows), 1)], dim=1)
        with torch.inference_mode():
            out = self._forward(state["cache"], input_ids=torch.tensor([[r.last] for r in rows], device=dev),
                                attention_mask=mask, position_ids=torch.tensor([[r.pos] for r in rows], device=dev))
            logits = out.logits[:, -1]
            greedy = logits.argmax(dim=-1).tolist()
        self.batch_sizes = (self.batch_sizes + [len(rows)])[-1000:]
        keep: list[int] = []
        for i, row in enumerate(rows):
            token = greedy[i] if row.rng is None else _pick(logits[i], row.choice.params, row.rng)
            row.last, row.pos = token, row.pos + 1
            if row.choice.cancelled:
                row.choice.fail("cancelled")
            elif not self._finish_token(row.choice, token):
                keep.append(i)
        state["mask"] = mask
        if len(keep) < len(rows):
            rows[:] = [rows[i] for i in keep]
            if not rows:
                state.update(cache=None, mask=None)
                return
            index = torch.tensor(keep, device=dev)
            mask = mask.index_select(0, index)
            first = int(mask.any(dim=0).nonzero()[0])  # drop columns that are padding for every remaining row
            state["mask"] = mask[:, first:]
            for layer in state["cache"].layers:
                layer.keys = layer.keys.index_select(0, index)[:, :, first:]
                layer.values = layer.values.index_select(0, index)[:, :, first:]


def _pad_kv(t: Any, length: int) -> Any:
    import torch

    if t.shape[2] == length:
        return t
    return torch.cat([t.new_zeros(t.shape[0], t.shape[1], length - t.shape[2], t.shape[3]), t], dim=2)


def _pad_mask(m: Any, length: int) -> Any:
    import torch

    if m.shape[1] == length:
        return m
    return torch.cat([m.new_zeros(m.shape[0], length - m.shape[1]), m], dim=1)


def _pick(logits: Any, params: SamplingParams, rng: Any) -> int:
    """Greedy (temperature 0) or temperature / top-p sampling with the choice's own generator."""
    import torch

    if rng is None:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        drop = sorted_p.cumsum(0) - sorted_p > params.top_p  # keep the smallest set reaching top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=rng))
