"""The step loop of one training process: token-weighted loss over a window of micro-batches, eval, checkpoints.

Distribution is accelerate's (DDP, multi-node, DeepSpeed, FSDP chosen by ``accelerate launch``); this loop only
uses the Accelerator API, and ``distributed.GlobalBatches`` says which rows each process trains on. One optimizer
step = ``gradient_accumulation_steps`` micro-batches per process; the loss is the sum over every trainable token in
that window divided by their count across all processes, so micro-batches with few tokens (packing, padding, the
empty micro-batches of a short last step) are not over-weighted and the loss curve does not depend on the number of
processes. The LR scheduler is stepped here once per optimizer step (not by accelerate, which would step it once per
process). The run around it (prepare, resume, train, finish) is ``run.py``.

**The loss** is taken on the next-token labels (the labels shifted left, the last position unlabelled), and the LM
head only scores the positions that have one (``labelled_only``: a pre-hook hands the head ``hidden[mask]``), so
prompt tokens, the first token of each packed sample and row padding cost no vocabulary-sized logits at all, and
the logits are never sliced and copied. The sum is the same as the cross-entropy of the shifted full logits.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

from llmops.errors import CheckFailed
from llmops.train import checkpoints, data, report


@contextlib.contextmanager
def labelled_only(head, keep):
    """While open, ``head`` (the LM head) is applied to the positions where ``keep`` is true only: the model's
    logits come back as ``[number kept, vocab]`` in row-major order of ``keep``. A forward pre-hook, so the call
    still goes through the wrapped model (DDP's reducer, FSDP's unsharding) and the weights keep their names."""
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][keep], *args[1:]))
    try:
        yield
    finally:
        handle.remove()


class Trainer:
    """One optimizer step, the eval pass and the step loop (logging, eval, checkpoints) of one process."""

    def __init__(self, args, accelerator, model, optimizer, train_rows, batches, eval_rows, collate):
        self.args, self.acc, self.model, self.optimizer = args, accelerator, model, optimizer
        self.rows, self.batches, self.eval_rows, self.collate = train_rows, batches, eval_rows, collate
        self.head = accelerator.unwrap_model(model).get_output_embeddings()
        self.steps_per_epoch = batches.steps_per_epoch
        self.total = args.max_steps or self.steps_per_epoch * args.epochs
        warmup = args.warmup_steps if args.warmup_steps is not None else round(args.warmup_ratio * self.total)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=min(warmup, self.total),
                                       num_training_steps=self.total)
        accelerator.register_for_checkpointing(self.scheduler)
        self.warmup = warmup
        self.step = 0
        self.tokens_seen = 0
        self.train_seconds = 0.0

    def _batch(self, indices: list[int]) -> dict:
        """Collated rows on the device; no rows: an empty micro-batch (one row, no labels, zero tokens). The label
        count is taken on the host, before the copy, so counting never waits for the device."""
        batch = self.collate([self.rows[i] for i in indices] if indices else self.rows[:1])
        if not indices:
            batch["labels"].fill_(data.IGNORE)
            batch["num_tokens"] = 0
        batch["num_labels"] = int((batch["labels"][:, 1:] != data.IGNORE).sum())
        return {k: v.to(self.acc.device) if hasattr(v, "to") else v for k, v in batch.items()}

    # ------------------------------------------------------------------ one optimizer step
    def _loss_sum(self, batch):
        import torch.nn.functional as F

        inputs = {k: v for k, v in batch.items() if k not in ("labels", "num_tokens", "num_labels")}
        targets = F.pad(batch["labels"][:, 1:], (0, 1), value=data.IGNORE)  # the next token's label, per position
        # No KV cache: transformers only turns restarting position ids into per-sample attention without one.
        if self.head is None:  # a model without a separate output layer: full logits
            logits = self.model(**inputs, use_cache=False).logits
            return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=data.IGNORE,
                                   reduction="sum")
        keep = targets != data.IGNORE
        with labelled_only(self.head, keep):
            logits = self.model(**inputs, use_cache=False).logits  # [labelled positions, vocab]
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum")

    def train_step(self, window: list[dict]) -> tuple:
        import torch

        acc = self.acc
        local = torch.tensor([sum(b["num_labels"] for b in window), sum(int(b["num_tokens"]) for b in window)],
                             device=acc.device, dtype=torch.float64)
        counts = acc.reduce(local, "sum")
        norm = counts[0].clamp(min=1).float() / acc.num_processes
        loss_sum = torch.zeros((), device=acc.device)
        for i, batch in enumerate(window):
            sync = i == len(window) - 1
            with contextlib.nullcontext() if sync else acc.no_sync(self.model):
                part = self._loss_sum(batch)
                acc.backward(part / norm * acc.gradient_accumulation_steps)  # backward divides by the GA steps
            loss_sum += part.detach()
        grad_norm, lr = None, self.scheduler.get_last_lr()[0]
        if self.args.max_grad_norm > 0:
            grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        self.optimizer.step()
        if not acc.optimizer_step_was_skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, counts, grad_norm, lr

    # ------------------------------------------------------------------ eval
    def evaluate(self) -> float | None:
        import torch

        if not self.eval_rows:
            return None
        acc, bs = self.acc, self.args.batch_size
        shard = self.eval_rows[acc.process_index::acc.num_processes]
        n_batches = math.ceil(math.ceil(len(self.eval_rows) / acc.num_processes) / bs)
        total = torch.zeros(2, device=acc.device, dtype=torch.float64)
        self.model.eval()
        with torch.no_grad():
            for b in range(n_batches):
                rows = shard[b * bs:(b + 1) * bs]
                batch = self.collate(rows or self.eval_rows[:1])
                if not rows:  # keep every process running the same number of forwards (FSDP/DeepSpeed need it)
                    batch["labels"].fill_(data.IGNORE)
                batch = {k: v.to(acc.device) if hasattr(v, "to") else v for k, v in batch.items()}
                with acc.autocast():
                    loss = self._loss_sum(batch)
                total += torch.stack([loss.double(), (batch["labels"][:, 1:] != data.IGNORE).sum().double()])
        self.model.train()
        total = acc.reduce(total, "sum")
        return float(total[0] / total[1].clamp(min=1))

    # ------------------------------------------------------------------ the loop
    def run(self, log: report.JsonLog, ckpt_root: Path, resume_state: dict) -> dict:
        import torch
        from tqdm.auto import tqdm

        args, acc = self.args, self.acc
        last_loss = next((r["loss"] for r in reversed(log.records) if "loss" in r), None)
        last_eval = next((r["eval_loss"] for r in reversed(log.records) if "eval_loss" in r), None)
        acc_loss = torch.zeros((), device=acc.device)
        acc_labels = acc_inputs = 0.0
        bar = tqdm(total=self.total, initial=self.step, disable=not acc.is_main_process, desc="training",
                   unit="step", dynamic_ncols=True, mininterval=1.0 if os.isatty(2) else 30.0)
        started = mark = time.monotonic()
        self.model.train()
        while self.step < self.total:
            epoch = self.step // self.steps_per_epoch
            for micro in self.batches.steps(epoch, self.step - epoch * self.steps_per_epoch):
                if self.step >= self.total:
                    break
                window = [self._batch(indices) for indices in micro]
                loss_sum, counts, grad_norm, lr = self.train_step(window)
                self.step += 1
                bar.update(1)
                acc_loss += loss_sum
                acc_labels += float(counts[0])
                acc_inputs += float(counts[1])
                self.tokens_seen += int(counts[1])
                end_of_epoch = self.step % self.steps_per_epoch == 0
                if self.step % args.logging_steps == 0 or self.step == self.total or end_of_epoch:
                    loss = float(acc.reduce(acc_loss.clone(), "sum")) / max(acc_labels, 1)
                    now = time.monotonic()
                    if not math.isfinite(loss):
                        raise CheckFailed(f"the training loss became {loss} at step {self.step}",
                                          "lower learning-rate, use bf16 instead of fp16, or check the data")
                    record = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "loss": loss,
                              "learning_rate": lr,
                              "grad_norm": None if grad_norm is None else float(grad_norm),
                              "tokens_per_second": acc_inputs / max(now - mark, 1e-9),
                              "tokens_seen": self.tokens_seen}
                    log.write(record)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    last_loss, mark = loss, now
                    acc_loss.zero_()
                    acc_labels = acc_inputs = 0.0
                due = self.step % args.eval_steps == 0 if args.eval_steps else end_of_epoch
                if self.eval_rows and (due or self.step == self.total):
                    last_eval = self.evaluate()
                    log.write({"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                               "eval_loss": last_eval})
                if args.checkpoint_steps and self.step % args.checkpoint_steps == 0 and self.step < self.total:
                    state = {"step": self.step, "tokens_seen": self.tokens_seen, "log_history": log.records,
                             "resume": resume_state, "train_seconds": self.train_seconds + time.monotonic() - started}
                    path = checkpoints.save(acc, ckpt_root, self.step, state, args.keep_checkpoints)
                    if acc.is_main_process:
                        bar.write(f"checkpoint saved: {path}")
        bar.close()
        self.train_seconds += time.monotonic() - started
        return {"train_loss": last_loss, "eval_loss": last_eval}
