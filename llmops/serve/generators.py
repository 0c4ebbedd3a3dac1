"""Text generators behind the model server: a local transformers model folder, or the deterministic echo fake.

Both turn a prompt into token ids (``encode``) and ids back into text (``decode``); generating is the engines' job
(``llmops.serve.engines``: continuous batching for transformers, one asyncio task per request for echo).

``TransformersGenerator`` serves the folder the train action writes (safetensors + tokenizer + chat template). An
empty prompt becomes the tokenizer's BOS token (EOS where there is none, as GPT-2-style tokenizers use it), so it
generates instead of failing; prompt + max_tokens beyond the context raise ``ContextLengthError``. A file of the
folder that the server cannot read is named in the error. ``EchoGenerator`` is a fake for load tests and canary
drills without torch: it "generates" the prompt's (or last user message's) own words back, one word = one token.
"""
from __future__ import annotations

import json
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


class ContextLengthError(ValueError):
    """The prompt plus max_tokens does not fit the model's context (OpenAI's ``context_length_exceeded``)."""


def check_readable(folder: Path) -> None:
    """Raise InputError naming the first file of ``folder`` this process cannot read (e.g. mode 0600, other owner)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror or exc}",
                                 f"make the model folder readable by the server's user (chmod -R a+rX {folder}); "
                                 "the train action writes its files 0644") from None


class EchoGenerator:
    """Deterministic fake model: answers with the first ``max_tokens`` words of the prompt (last user message)."""

    kind = "echo"

    def __init__(self, token_delay_s: float = 0.0):
        self.token_delay_s = max(0.0, token_delay_s)

    def load(self) -> None:
        return None

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def prompt_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def answer_words(self, prompt: str, chat_messages: list[dict[str, str]] | None) -> list[str]:
        if chat_messages:
            users = [m["content"] for m in chat_messages if m["role"] == "user"]
            return (users[-1] if users else "").split()
        return prompt.split()

    @staticmethod
    def decode(words: list[str]) -> str:
        return " ".join(words)


class TransformersGenerator:
    """A local causal-LM folder loaded with transformers (CPU, or CUDA when ``device`` says so)."""

    kind = "transformers"

    def __init__(self, model_dir: str | Path, *, device: str = "auto", max_context: int | None = None):
        self.model_dir = Path(model_dir)
        self.device = device
        self.max_context = max_context
        self.model: Any = None
        self.tokenizer: Any = None
        self.eos_ids: set[int] = set()

    def load(self) -> None:
        if not self.model_dir.is_dir():
            raise InputError(f"model folder {self.model_dir} does not exist",
                             "pass --model-dir the folder the train action wrote, or use --echo")
        if not (self.model_dir / "config.json").is_file():
            raise InputError(f"{self.model_dir} has no config.json: not a transformers model folder",
                             "pass the folder that holds config.json, *.safetensors and the tokenizer files")
        check_readable(self.model_dir)
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
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)

    @property
    def context_limit(self) -> int | None:
        return self.max_context or getattr(self.model.config, "max_position_embeddings", None)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("this model's tokenizer has no chat template; use /v1/completions")
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, prompt: str, max_tokens: int, *, chat: bool) -> list[int]:
        """Token ids of a prompt (a rendered chat template already holds its special tokens)."""
        ids = list(self.tokenizer(prompt, add_special_tokens=not chat)["input_ids"])
        if not ids:  # neither tokenizer family adds BOS to "": start from BOS (GPT-2 style: EOS) like llama.cpp
            start = self.tokenizer.bos_token_id
            start = self.tokenizer.eos_token_id if start is None else start
            if start is None:
                raise ValueError("the prompt is empty and this tokenizer has no BOS/EOS token to start from")
            ids = [int(start)]
        limit = self.context_limit
        if limit and len(ids) + max_tokens > limit:
            raise ContextLengthError(f"this model's maximum context length is {limit} tokens, but the prompt has "
                                     f"{len(ids)} tokens and max_tokens is {max_tokens}; shorten the prompt or "
                                     "lower max_tokens")
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
