"""Local model folder backend: batched generation (left padding, prompts sorted by length so batches carry little
padding, GPU when present) and reference scoring for perplexity/loss.

Greedy batched output equals one-at-a-time greedy output (the unit tests check it on the tiny model): the
attention mask hides the left padding and positions are counted from the first real token.
"""
from __future__ import annotations

import time
from pathlib import Path

from llmops.errors import InputError, UsageError
from llmops.eval.backends import Generation, Generations, progress
from llmops.eval.data import Sample


class LocalBackend:
    name = "local"

    def __init__(self, model_dir: str | Path, *, batch_size: int = 16, max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, device: str | None = None,
                 show_progress: bool = True) -> None:
        self.path = Path(model_dir)
        if not self.path.is_dir():
            raise InputError(f"model folder not found: {self.path}", "pass --model-dir a folder written by "
                             "save_pretrained (config.json, weights, tokenizer)")
        if not (self.path / "config.json").exists():
            raise InputError(f"{self.path} has no config.json: not a model folder",
                             "point --model-dir at the folder save_pretrained wrote")
        if batch_size < 1 or max_new_tokens < 1:
            raise UsageError("--batch-size and --max-new-tokens must be at least 1")
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.device_name = device
        self.show_progress = show_progress
        self.model = self.tokenizer = None
        self.truncated = 0

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device_name or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            tok = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype="auto" if device != "cpu"
                                                         else torch.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot load the model in {self.path}: {str(exc).splitlines()[0]}",
                             "the folder needs config.json, the weights and the tokenizer files") from None
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.model, self.tokenizer, self.device = model.to(device).eval(), tok, device
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = set(eos) | ({tok.eos_token_id} if tok.eos_token_id is not None else set())
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 0)

    def info(self) -> dict:
        return {"backend": self.name, "model_dir": str(self.path), "device": getattr(self, "device", None),
                "batch_size": self.batch_size, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "truncated_prompts": self.truncated}

    def encode_prompt(self, sample: Sample, room: int = 0) -> list[int]:
        tok = self.tokenizer
        if sample.is_chat:
            if not getattr(tok, "chat_template", None):
                raise InputError(f"eval line {sample.line} is a chat row but the model's tokenizer has no chat "
                                 "template", "use prompt/reference rows, or a model folder with a chat template",
                                 line=sample.line)
            text = tok.apply_chat_template(sample.messages, add_generation_prompt=True, tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(sample.prompt)["input_ids"]
        if not ids:
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            ids = [start]
        limit = self.max_positions - room if self.max_positions else 0
        if limit > 0 and len(ids) > limit:
            self.truncated += 1
            ids = ids[-limit:]  # keep the end of the prompt, next to where the answer goes
        return ids

    def _batches(self, lengths: list[int]):
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        for start in range(0, len(order), self.batch_size):
            yield order[start:start + self.batch_size]

    def _pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long)
        return ids.to(self.device), mask.to(self.device)

    def _sync(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    # ------------------------------------------------------------------ generation
    def generate(self, samples: list[Sample]) -> Generations:
        import torch

        self.load()
        prompts = [self.encode_prompt(s, room=self.max_new_tokens) for s in samples]
        items: list[Generation | None] = [None] * len(samples)
        kwargs = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id,
                  "eos_token_id": sorted(self.eos_ids) or None}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        torch.manual_seed(self.seed)
        bar = progress(len(samples), "generating") if self.show_progress else None
        started = time.perf_counter()
        with torch.inference_mode():
            for batch in self._batches([len(p) for p in prompts]):
                ids, mask = self._pad([prompts[i] for i in batch])
                t0 = time.perf_counter()
                out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                self._sync()
                latency = time.perf_counter() - t0
                for row, i in zip(out[:, ids.shape[1]:].tolist(), batch, strict=True):
                    cut = next((j for j, t in enumerate(row) if t in self.eos_ids), len(row))
                    text = self.tokenizer.decode(row[:cut], skip_special_tokens=True)
                    items[i] = Generation(text, latency, len(prompts[i]), min(cut + 1, len(row)))
                if bar is not None:
                    bar.update(len(batch))
        seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        return Generations([g for g in items if g is not None], seconds, self.info())

    # ------------------------------------------------------------------ reference scoring
    def score(self, samples: list[Sample]) -> list[tuple[float, int]]:
        """Per sample: (sum of negative log-likelihood of the reference tokens given the prompt, their count)."""
        import torch

        self.load()
        seqs, ref_lens = [], []
        for s in samples:
            ref = self.tokenizer(s.reference, add_special_tokens=False)["input_ids"]
            if self.max_positions:
                ref = ref[:max(1, self.max_positions - 1)]
            prompt = self.encode_prompt(s, room=len(ref))
            seqs.append(prompt + ref)
            ref_lens.append(len(ref))
        out: list[tuple[float, int] | None] = [None] * len(samples)
        bar = progress(len(samples), "scoring references") if self.show_progress else None
        with torch.inference_mode():
            for batch in self._batches([len(s) for s in seqs]):
                ids, mask = self._pad([seqs[i] for i in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1]
                width = ids.shape[1]
                target_mask = torch.zeros_like(mask[:, 1:], dtype=torch.bool)
                for r, i in enumerate(batch):
                    if ref_lens[i]:
                        target_mask[r, width - 1 - ref_lens[i]:] = True
                chosen = logits[target_mask].float().log_softmax(-1)
                targets = ids[:, 1:][target_mask]
                token_lp = chosen.gather(-1, targets[:, None])[:, 0]
                per_row = torch.zeros(len(batch), dtype=torch.float64, device=token_lp.device)
                rows = target_mask.nonzero()[:, 0]
                per_row.index_add_(0, rows, -token_lp.double())
                for r, i in enumerate(batch):
                    out[i] = (float(per_row[r]), ref_lens[i])
                if bar is not None:
                    bar.update(len(batch))
        if bar is not None:
            bar.close()
        return [o for o in out if o is not None]
