"""Token counts for validate-data's ``--max-tokens`` check, with a tokenizer loaded from a local folder only.

Rows are counted the way a trainer formats them: ``chat`` rows, and ``prompt-completion`` rows as a user turn plus
an assistant turn, go through the tokenizer's chat template when it has one; otherwise (and for ``text`` rows) the
text is tokenized with the tokenizer's special tokens. Counting is batched (the fast tokenizer runs in Rust).
"""
from __future__ import annotations

import os
from pathlib import Path

from llmops.errors import InputError


class TokenCounter:
    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"tokenizer folder not found: {path}", "give a local folder that holds tokenizer.json or "
                             "tokenizer_config.json (models are never downloaded)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        try:
            self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"cannot load a tokenizer from {path}: {first}",
                             "the folder needs tokenizer.json (or the slow tokenizer files) and tokenizer_config.json",
                             ) from None
        self.templated = bool(getattr(self.tok, "chat_template", None))
        self.path = str(path)

    def _render(self, fmt: str | None, row: dict) -> tuple[str, bool]:
        """Text to tokenize and whether it already holds the special tokens (a rendered chat template)."""
        if fmt == "chat" or (fmt == "prompt-completion" and self.templated):
            messages = row["messages"] if fmt == "chat" else [
                {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
            if self.templated:
                return self.tok.apply_chat_template(messages, tokenize=False), True
            from llmops.data.formats import message_text

            return "\n".join(f"{m['role']}: {message_text(m)}" for m in messages), False
        if fmt == "prompt-completion":
            return row["prompt"] + row["completion"], False
        if fmt == "text":
            return row["text"], False
        return "\n".join(v for v in row.values() if isinstance(v, str)), False

    def count(self, items: list[tuple[str | None, dict]]) -> list[int]:
        """Token counts of ``(format, row)`` pairs, in order."""
        rendered = [self._render(fmt, row) for fmt, row in items]
        out = [0] * len(items)
        for has_special in (False, True):
            idx = [i for i, (_, templated) in enumerate(rendered) if templated == has_special]
            if idx:
                enc = self.tok([rendered[i][0] for i in idx], add_special_tokens=not has_special)["input_ids"]
                for i, ids in zip(idx, enc, strict=True):
                    out[i] = len(ids)
        return out
