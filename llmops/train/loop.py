"""The training run: inputs checked before torch loads, then one accelerate loop for every setup.

Distribution is accelerate's (DDP, multi-node, DeepSpeed, FSDP chosen by ``accelerate launch``); this loop only
uses the Accelerator API. One optimizer step = ``gradient_accumulation_steps`` micro-batches per process; the loss
is the sum over every trainable token in that window divided by their count across all processes, so micro-batches
with few tokens (packing, padding) are not over-weighted. The LR scheduler is stepped here once per optimizer step
(not by accelerate, which would step it once per process), with the total computed from the per-process dataloader.

Layout: the run trains into ``<output_dir>.partial`` and renames it to ``output_dir`` after the weights, tokenizer,
log and (last) ``llmops-model.json`` are written, so a crash never leaves a folder that looks complete. Checkpoints
live in ``<output_dir>.checkpoints`` (or ``--checkpoint-dir``) and survive crashes for ``--resume-from-checkpoint``.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
import shutil
import time
from functools import partial
from itertools import islice
from pathlib import Path

from llmops import gha, paths
from llmops.errors import CheckFailed, UsageError
from llmops.train import checkpoints, config, data, metadata, modeling, packing, report


def _accelerator(args):
    from accelerate import Accelerator

    try:
        return Accelerator(mixed_precision=args.mixed_precision,
                           gradient_accumulation_steps=args.gradient_accumulation_steps)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"accelerate could not start with mixed-precision {args.mixed_precision}: {exc}",
                         "use bf16 on Ampere or newer GPUs, fp16 on older GPUs, no on CPU") from None


def _peak_memory_mb(accelerator) -> float:
    import torch

    if torch.cuda.is_available():
        local = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource

        local = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return float(accelerator.reduce(torch.tensor(local, device=accelerator.device), "max").item())


def _hardware(accelerator) -> dict:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"device": accelerator.device.type, "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type).split(".")[-1], "gpus": gpus,
            "cpu_count": os.cpu_count(), "hostname": platform.node()}


def _dataset_sha(info: data.DatasetInfo) -> str:
    return hashlib.sha256("".join(f["sha256"] for f in info.files).encode()).hexdigest()


class Trainer:
    def __init__(self, args, accelerator, model, optimizer, train_dl, sampler, eval_rows, collate, tokenizer):
        self.args, self.acc, self.model, self.optimizer = args, accelerator, model, optimizer
        self.dl, self.sampler, self.eval_rows, self.collate, self.tokenizer = train_dl, sampler, eval_rows, collate, \
            tokenizer
        ga = args.gradient_accumulation_steps
        self.steps_per_epoch = math.ceil(len(train_dl) / ga)
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

    # ------------------------------------------------------------------ one optimizer step
    def _loss_sum(self, batch):
        import torch.nn.functional as F

        inputs = {k: v for k, v in batch.items() if k not in ("labels", "num_tokens")}
        # No KV cache: transformers only turns restarting position ids into per-sample attention without one.
        logits = self.model(**inputs, use_cache=False).logits
        labels = batch["labels"]
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                               ignore_index=data.IGNORE, reduction="sum")

    def train_step(self, window: list[dict]) -> tuple:
        import torch

        acc = self.acc
        local = torch.tensor([sum(int((b["labels"][:, 1:] != data.IGNORE).sum()) for b in window),
                              sum(int(b["num_tokens"]) for b in window)], device=acc.device, dtype=torch.float64)
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
        ga = args.gradient_accumulation_steps
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
            self.sampler.set_epoch(epoch)
            self.dl.set_epoch(epoch)
            skip = (self.step - epoch * self.steps_per_epoch) * ga
            batches = iter(acc.skip_first_batches(self.dl, skip) if skip else self.dl)
            while self.step < self.total:
                window = list(islice(batches, ga))
                if not window:
                    break
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


def run_training(args) -> int:
    wall_start = time.monotonic()
    out, part = Path(args.output_dir), config.partial_dir(args.output_dir)
    ckpt_root = config.checkpoint_root(args)
    if out.exists() and not args.overwrite:
        raise UsageError(f"output-dir {out} already exists", "train into a new folder (e.g. models/<git sha>) or set "
                         "overwrite: true")
    if os.environ.get("RANK", "0") in ("", "0"):  # never delete a <output>.partial this action did not create
        paths.claim_partial(part, args.overwrite)
    # Everything a user can get wrong is checked before torch loads.
    modeling.check_source(args.model_name)
    tok_name = args.tokenizer or args.model_name
    modeling.check_source(tok_name, "tokenizer", need="tokenizer")
    rows, info = data.read_rows(args.dataset, args.format)
    eval_rows, eval_info = data.read_rows(args.eval_dataset, info.format, "eval dataset") \
        if args.eval_dataset else ([], None)
    resume_from = checkpoints.resolve(args.resume_from_checkpoint, ckpt_root)
    if args.resume_from_checkpoint == "latest" and resume_from is None and os.environ.get("RANK", "0") in ("", "0"):
        gha.annotate("notice", f"no checkpoint in {ckpt_root} yet: starting from step 0")

    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    acc = _accelerator(args)
    set_seed(args.seed)
    tokenizer = modeling.load_tokenizer(tok_name)
    samples = data.encode_rows(tokenizer, info.format, rows, args.max_seq_length, args.truncation, info)
    eval_samples = data.encode_rows(tokenizer, info.format, eval_rows, args.max_seq_length, args.truncation,
                                    eval_info, "eval dataset") if eval_info else []
    arrange = partial(packing.pack, capacity=args.max_seq_length) if args.packing else packing.unpacked
    collate = partial(packing.collate_packed if args.packing else packing.collate_padded,
                      pad_id=tokenizer.pad_token_id)
    train_rows = arrange(samples)
    model = modeling.load_model(args.model_name, args.model_dtype, args.attn_implementation)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if args.lora:
        model = modeling.apply_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_target_modules)
    trainable, total_params = modeling.count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate,
                                  weight_decay=args.weight_decay)
    sampler = packing.EpochSampler(len(train_rows), args.seed)
    dl = DataLoader(train_rows, batch_size=args.batch_size, sampler=sampler, collate_fn=collate)
    model, optimizer, dl = acc.prepare(model, optimizer, dl)
    trainer = Trainer(args, acc, model, optimizer, dl, sampler, arrange(eval_samples), collate, tokenizer)

    resume_state = {"dataset_sha256": _dataset_sha(info), "num_processes": acc.num_processes,
                    "batch_size": args.batch_size, "gradient_accumulation_steps": args.gradient_accumulation_steps,
                    "max_seq_length": args.max_seq_length, "packing": args.packing, "seed": args.seed,
                    "lora": args.lora}
    history: list[dict] = []
    if resume_from is not None:
        state = checkpoints.read_state(resume_from)
        checkpoints.check_compatible(resume_from, state, resume_state)
        acc.load_state(str(resume_from))
        trainer.step, trainer.tokens_seen = state["step"], state["tokens_seen"]
        trainer.train_seconds = state.get("train_seconds", 0.0)
        history = state["log_history"]
        if acc.is_main_process:
            gha.annotate("notice", f"resumed from {resume_from} at step {trainer.step} of {trainer.total}")
    if acc.is_main_process:
        paths.fresh_partial(part)
    acc.wait_for_everyone()
    log = report.JsonLog(part / report.LOG_FILE if acc.is_main_process else None, history)
    if acc.is_main_process:
        print(f"training {args.model_name}: {trainable:,} of {total_params:,} parameters trainable, "
              f"{len(samples)} samples in {len(train_rows)} rows, {trainer.total} steps "
              f"({trainer.steps_per_epoch}/epoch), {acc.num_processes} process(es) on {acc.device}", flush=True)
    losses = trainer.run(log, ckpt_root, resume_state)

    acc.wait_for_everyone()
    weights = modeling.save_final(acc, model, tokenizer, part, lora=args.lora, merge=args.merge_lora)
    peak = _peak_memory_mb(acc)
    hardware = _hardware(acc)
    meta = None
    if acc.is_main_process:
        version = args.model_version or metadata.git_sha()
        if not version:
            version = "local-" + metadata.now_utc().replace(":", "").replace("-", "")
            gha.warning(f"no git sha found: model version set to {version} (set model-version to choose one)")
        run_cfg = config.run_config(args) | {"total_steps": trainer.total, "steps_per_epoch": trainer.steps_per_epoch,
                                             "warmup_steps": trainer.warmup, "trainable_parameters": trainable,
                                             "mixed_precision": acc.mixed_precision,
                                             "num_processes": acc.num_processes,
                                             "parameters": total_params}
        meta = {
            "model_version": version, "base_model": args.model_name, "weights": weights,
            "created_at": metadata.now_utc(), "format": info.format, "dataset": info.as_dict(),
            "eval_dataset": eval_info.as_dict() if eval_info else None, "config": run_cfg,
            "metrics": {**losses, "steps": trainer.step, "epochs": round(trainer.step / trainer.steps_per_epoch, 4),
                        "tokens_seen": trainer.tokens_seen,
                        "tokens_per_second": trainer.tokens_seen / max(trainer.train_seconds, 1e-9),
                        "train_seconds": round(trainer.train_seconds, 3),
                        "wall_seconds": round(time.monotonic() - wall_start, 3), "peak_memory_mb": round(peak, 1)},
            "libraries": metadata.library_versions(), "hardware": hardware,
            "resumed_from": str(resume_from) if resume_from else None,
        }
        (part / paths.PARTIAL_MARK).unlink(missing_ok=True)
        metadata.write_model_metadata(part, meta)
        if out.exists():
            shutil.rmtree(out)
        part.rename(out)
        print(f"model written to {out.resolve()}", flush=True)
        report.summary(meta, log.records, str(out)).write()
        gha.set_outputs(report.outputs(meta, str(out)))
    acc.wait_for_everyone()
    acc.end_training()
    return 0
