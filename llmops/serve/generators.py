"""Text generators behind the model server: a local transformers model folder, or the deterministic echo fake.

``TransformersGenerator`` serves the folder the train action writes (safetensors + tokenizer + chat template). It
measures time to first token with a generation streamer (the moment the first new token exists), so TTFT is real
even though responses are not streamed. ``EchoGenerator`` is a fake for load tests and canary drills without torch:
it "generates" the prompt's own words back (one word = one token), optionally with a per-token delay.

Both are called one request at a time (the server holds a lock around them: batch size 1).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.errors import InputError

MODEL_INFO_FILE = "llmops-model.json"


@dataclass(frozen=True)
class ModelInfo:
    version: str
    name: str
    path: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def read_model_info(model_dir: str | Path | None, *, version: str | None = None, name: str | None = None,
                    warn: Any = None) -> ModelInfo:
    """Version and name for a model folder: flags win, then ``llmops-model.json``, then the folder name.

    Without a folder (echo mode) the version defaults to ``echo`` and the name to the version.

    The JSON file is read defensively: missing, unreadable or malformed files fall back (``warn(message)`` is
    called so the operator sees why), since a server that cannot start over a metadata file helps nobody.
    """
    details: dict[str, Any] = {}
    folder = Path(model_dir) if model_dir else None
    if folder is not None and (folder / MODEL_INFO_FILE).is_file():
        try:
            data = json.loads((folder / MODEL_INFO_FILE).read_text(encoding="utf-8"))
            if isinstance(data, dict):
                details = data
            elif warn:
                warn(f"{folder / MODEL_INFO_FILE} is not a JSON object; using the folder name as the version")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if warn:
                warn(f"could not read {folder / MODEL_INFO_FILE} ({exc}); using the folder name as the version")
    fallback = folder.resolve().name if folder is not None else "echo"
    file_version = details.get("model_version")
    file_name = details.get("model_name") or details.get("name")
    resolved_version = version or (str(file_version) if isinstance(file_version, (str, int)) and str(file_version)
                                   else fallback)
    resolved_name = name or (str(file_name) if isinstance(file_name, str) and file_name
                             else fallback if folder is not None else resolved_version)
    return ModelInfo(version=resolved_version, name=resolved_name, path=str(folder) if folder else None,
                     details=details)


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    ttft_s: float | None  # from the generator call to the first new token; None when nothing was generated
    generation_s: float  # the whole generator call


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class EchoGenerator:
    """Deterministic fake model: answers with the first ``max_tokens`` words of the prompt (last user message)."""

    kind = "echo"

    def __init__(self, token_delay_s: float = 0.0):
        self.token_delay_s = max(0.0, token_delay_s)

    def load(self) -> None:
        return None

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def complete(self, prompt: str, params: SamplingParams, *, chat_messages: list[dict[str, str]] | None = None
                 ) -> Generation:
        start = time.perf_counter()
        source = prompt
        if chat_messages:
            users = [m["content"] for m in chat_messages if m["role"] == "user"]
            source = users[-1] if users else ""
        words = source.split()
        out = words[: params.max_tokens]
        ttft = None
        for i in range(len(out)):
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            if i == 0:
                ttft = time.perf_counter() - start
        text, stopped = apply_stop(" ".join(out), params.stop)
        finish = "stop" if stopped or len(words) <= params.max_tokens else "length"
        return Generation(text, len(prompt.split()), len(out), finish, ttft, time.perf_counter() - start)


class _FirstTokenTimer:
    """A transformers streamer that only notes when the first generated token arrives (put #1 is the prompt)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first_at = time.perf_counter()

    def end(self) -> None:
        return None


class TransformersGenerator:
    """A local causal-LM folder loaded with transformers (CPU, or CUDA when ``device`` says so)."""

    kind = "transformers"

    def __init__(self, model_dir: str | Path, *, device: str = "auto", max_context: int | None = None):
        self.model_dir = Path(model_dir)
        self.device = device
        self.max_context = max_context
        self.model: Any = None
        self.tokenizer: Any = None

    def load(self) -> None:
        if not self.model_dir.is_dir():
            raise InputError(f"model folder {self.model_dir} does not exist",
                             "pass --model-dir the folder the train action wrote, or use --echo")
        if not (self.model_dir / "config.json").is_file():
            raise InputError(f"{self.model_dir} has no config.json: not a transformers model folder",
                             "pass the folder that holds config.json, *.safetensors and the tokenizer files")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype="auto")
        except (OSError, ValueError) as exc:
            raise InputError(f"could not load the model in {self.model_dir}: {exc}",
                             "check the folder has the model weights and tokenizer files") from None
        self.model = model.to(device).eval()
        self.device = device

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("this model's tokenizer has no chat template; use /v1/completions")
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def complete(self, prompt: str, params: SamplingParams, *, chat_messages: list[dict[str, str]] | None = None
                 ) -> Generation:
        import torch

        start = time.perf_counter()
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=chat_messages is None)
        input_ids = enc["input_ids"].to(self.device)
        n_in = int(input_ids.shape[1])
        limit = self.max_context or getattr(self.model.config, "max_position_embeddings", None)
        if limit and n_in + params.max_tokens > limit:
            raise ValueError(f"prompt ({n_in} tokens) + max_tokens ({params.max_tokens}) exceeds the model's "
                             f"context of {limit} tokens")
        timer = _FirstTokenTimer()
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_tokens, "min_new_tokens": 0, "streamer": timer,
                                  "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=enc["attention_mask"].to(self.device),
                                      **kwargs)
        new_ids = out[0, n_in:].tolist()
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        ended = bool(new_ids) and new_ids[-1] in eos_ids
        text, stopped = apply_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), params.stop)
        elapsed = time.perf_counter() - start
        ttft = (timer.first_at - start) if timer.first_at is not None else None
        return Generation(text, n_in, len(new_ids), "stop" if ended or stopped else "length", ttft, elapsed)
