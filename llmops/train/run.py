"""One training run, in four parts that every process goes through: ``check_inputs`` (before torch loads, so bad
input fails fast), ``prepare`` (accelerator, tokenized rows, model, optimizer, the trainer), ``resume`` (a
checkpoint's state and log history) and ``finish`` (the model folder). Only the main process (rank 0 of all
machines) writes the model folder; the others take part in the collective steps (gathering sharded weights, the
barriers) and write nothing there.

Layout: the run trains into ``<output_dir>.partial`` and renames it to ``output_dir`` after the weights, tokenizer,
log and (last) ``llmops-model.json`` are written, so a crash, a killed rank or a lost machine never leaves a
folder that looks complete. Checkpoints live in ``<output_dir>.checkpoints`` (or ``--checkpoint-dir``; on several
machines it must be storage they share) and survive crashes for ``--resume-from-checkpoint``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from llmops import paths
from llmops.errors import UsageError
from llmops.train import checkpoints, config, data, distributed, metadata, modeling, packing, report
from llmops.train.loop import Trainer

logger = logging.getLogger(__name__)


@dataclass
class Inputs:
    """Everything read and checked before torch is imported."""
    out: Path
    part: Path
    ckpt_root: Path
    tokenizer_name: str
    rows: list
    info: data.DatasetInfo
    eval_rows: list
    eval_info: data.DatasetInfo | None
    resume_from: Path | None
    wall_start: float = field(default_factory=time.monotonic)


@dataclass
class Prepared:
    acc: object
    tokenizer: object
    model: object
    trainer: Trainer
    samples: int
    rows: int
    trainable: int
    parameters: int
    resume_state: dict


def _dataset_sha(info: data.DatasetInfo) -> str:
    return hashlib.sha256("".join(f["sha256"] for f in info.files).encode()).hexdigest()


def check_inputs(args) -> Inputs:
    wall_start = time.monotonic()
    out, part = Path(args.output_dir), config.partial_dir(args.output_dir)
    ckpt_root = config.checkpoint_root(args)
    if out.exists() and not args.overwrite:
        raise UsageError(f"output-dir {out} already exists", "train into a new folder (e.g. models/<git sha>) or set "
                         "overwrite: true")
    if os.environ.get("RANK", "0") in ("", "0"):  # never delete a <output>.partial this action did not create
        paths.claim_partial(part, args.overwrite)
    modeling.check_source(args.model_name)
    tok_name = args.tokenizer or args.model_name
    modeling.check_source(tok_name, "tokenizer", need="tokenizer")
    rows, info = data.read_rows(args.dataset, args.format)
    eval_rows, eval_info = data.read_rows(args.eval_dataset, info.format, "eval dataset") \
        if args.eval_dataset else ([], None)
    resume_from = checkpoints.resolve(args.resume_from_checkpoint, ckpt_root)
    if args.resume_from_checkpoint == "latest" and resume_from is None and os.environ.get("RANK", "0") in ("", "0"):
        logger.info(f"no checkpoint in {ckpt_root} yet: starting from step 0")
    return Inputs(out, part, ckpt_root, tok_name, rows, info, eval_rows, eval_info, resume_from, wall_start)


def prepare(args, inp: Inputs) -> Prepared:
    from accelerate.utils import set_seed

    acc = distributed.make_accelerator(args)
    set_seed(args.seed)
    tokenizer = modeling.load_tokenizer(inp.tokenizer_name)
    samples = data.encode_rows(tokenizer, inp.info.format, inp.rows, args.max_seq_length, args.truncation, inp.info)
    eval_samples = data.encode_rows(tokenizer, inp.info.format, inp.eval_rows, args.max_seq_length, args.truncation,
                                    inp.eval_info, "eval dataset") if inp.eval_info else []
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
    optimizer = modeling.make_optimizer(model, args.learning_rate, args.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)
    batches = distributed.GlobalBatches(packing.EpochSampler(len(train_rows), args.seed), args.batch_size,
                                        acc.num_processes, acc.process_index, args.gradient_accumulation_steps)
    trainer = Trainer(args, acc, model, optimizer, train_rows, batches, arrange(eval_samples), collate)
    resume_state = {"dataset_sha256": _dataset_sha(inp.info), "samples_per_step": batches.per_step,
                    "num_processes": acc.num_processes, "batch_size": args.batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps,
                    "max_seq_length": args.max_seq_length, "packing": args.packing, "seed": args.seed,
                    "lora": args.lora}
    return Prepared(acc, tokenizer, model, trainer, len(samples), len(train_rows), trainable, total_params,
                    resume_state)


def resume(run: Prepared, resume_from: Path | None) -> list[dict]:
    """Load a checkpoint (any world size with the same global batch); returns its log history."""
    if resume_from is None:
        return []
    state = checkpoints.read_state(resume_from)
    checkpoints.check_compatible(resume_from, state, run.resume_state)
    run.acc.load_state(str(resume_from))
    trainer = run.trainer
    trainer.step, trainer.tokens_seen = state["step"], state["tokens_seen"]
    trainer.train_seconds = state.get("train_seconds", 0.0)
    if run.acc.is_main_process:
        was = state["resume"].get("num_processes")
        note = f" (written by {was} process(es), now {run.acc.num_processes})" if was != run.acc.num_processes else ""
        logger.info(f"resumed from {resume_from} at step {trainer.step} of {trainer.total}{note}")
    return state["log_history"]


def open_log(run: Prepared, part: Path, history: list[dict]) -> report.JsonLog:
    """The main process starts ``<output_dir>.partial`` afresh; the others log nowhere."""
    acc = run.acc
    if acc.is_main_process:
        paths.fresh_partial(part)
    acc.wait_for_everyone()
    return report.JsonLog(part / report.LOG_FILE if acc.is_main_process else None, history)


def _version(args) -> str:
    version = args.model_version or metadata.git_sha()
    if not version:
        version = "local-" + metadata.now_utc().replace(":", "").replace("-", "")
        logger.warning(f"no git sha found: model version set to {version} (set model-version to choose one)")
    return version


def finish(args, inp: Inputs, run: Prepared, log: report.JsonLog, losses: dict) -> dict | None:
    """Every process gathers the weights; the main process writes the folder, renames it, reports."""
    acc, trainer = run.acc, run.trainer
    acc.wait_for_everyone()
    weights = modeling.save_final(acc, run.model, run.tokenizer, inp.part, lora=args.lora, merge=args.merge_lora)
    peak = distributed.peak_memory_mb(acc)
    hardware = distributed.hardware(acc)
    meta = None
    if acc.is_main_process:
        run_cfg = config.run_config(args) | {"total_steps": trainer.total, "steps_per_epoch": trainer.steps_per_epoch,
                                             "warmup_steps": trainer.warmup, "trainable_parameters": run.trainable,
                                             "mixed_precision": acc.mixed_precision,
                                             "num_processes": acc.num_processes,
                                             "samples_per_step": run.resume_state["samples_per_step"],
                                             "parameters": run.parameters}
        meta = {
            "model_version": _version(args), "base_model": args.model_name, "weights": weights,
            "created_at": metadata.now_utc(), "format": inp.info.format, "dataset": inp.info.as_dict(),
            "eval_dataset": inp.eval_info.as_dict() if inp.eval_info else None, "config": run_cfg,
            "metrics": {**losses, "steps": trainer.step, "epochs": round(trainer.step / trainer.steps_per_epoch, 4),
                        "tokens_seen": trainer.tokens_seen,
                        "tokens_per_second": trainer.tokens_seen / max(trainer.train_seconds, 1e-9),
                        "train_seconds": round(trainer.train_seconds, 3),
                        "wall_seconds": round(time.monotonic() - inp.wall_start, 3), "peak_memory_mb": round(peak, 1)},
            "libraries": metadata.library_versions(), "hardware": hardware,
            "resumed_from": str(inp.resume_from) if inp.resume_from else None,
        }
        (inp.part / paths.PARTIAL_MARK).unlink(missing_ok=True)
        metadata.write_model_metadata(inp.part, meta)
        if inp.out.exists():
            shutil.rmtree(inp.out)
        inp.part.rename(inp.out)
        print(f"model written to {inp.out.resolve()}", flush=True)
        report.publish(meta, log.records, str(inp.out))
    acc.wait_for_everyone()
    acc.end_training()
    return meta


def run_training(args) -> int:
    inp = check_inputs(args)
    try:
        run = prepare(args, inp)
        history = resume(run, inp.resume_from)
        log = open_log(run, inp.part, history)
        if run.acc.is_main_process:
            print(f"training {args.model_name}: {run.trainable:,} of {run.parameters:,} parameters trainable, "
                  f"{run.samples} samples in {run.rows} rows, {run.trainer.total} steps "
                  f"({run.trainer.steps_per_epoch}/epoch of {run.resume_state['samples_per_step']} rows), "
                  f"{run.acc.num_processes} process(es) on {run.acc.device}", flush=True)
        losses = run.trainer.run(log, inp.ckpt_root, run.resume_state)
        finish(args, inp, run, log, losses)
    except RuntimeError as exc:
        lost = distributed.peer_lost(exc, args.distributed_timeout)
        if lost is None:
            raise
        raise lost from None
    return 0
