"""Every training setting: the argparse parser (flags of scripts/train.py, action inputs via INPUT_<NAME>) and the
checks that need more than one flag. Kebab-case flags; the seed pipeline's ``--model_name``/``--output_dir`` stay listed as aliases (llmops.cli
parses any ``--snake_case`` spelling).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from llmops.data.formats import FORMATS
from llmops.errors import UsageError
from llmops.inputs import parse_bool, parse_number
from llmops.train.distributed import DEFAULT_TIMEOUT
from llmops.train.modeling import DTYPES

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial", "inverse_sqrt")
MIXED = ("no", "fp16", "bf16")
PREFLIGHT = ("error", "warn", "off")
log = logging.getLogger(__name__)


def _float(text: str) -> float:
    return float(parse_number("value", text, float))


def _int(text: str) -> int:
    return int(parse_number("value", text, int))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py", description="Fine-tune a causal LM with accelerate (full or LoRA), resumable and versioned. "
        "Run under `accelerate launch`, as plain `python` for one process, or with --launch to have it start "
        "`accelerate launch` itself after the GPU preflight.")
    add = p.add_argument
    g = p.add_argument_group("model and data")
    g.add_argument("--model-name", "--model_name", "--model", dest="model_name", required=True,
                   help="base model: local folder or hub id")
    g.add_argument("--tokenizer", help="tokenizer folder or hub id (default: the model's)")
    g.add_argument("--dataset", required=True, help="training JSONL file(s); globs and commas allowed")
    g.add_argument("--eval-dataset", dest="eval_dataset", help="eval JSONL (same format)")
    g.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    g.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True)
    g.add_argument("--overwrite", type=lambda t: parse_bool("overwrite", t), default=False)
    g.add_argument("--model-version", dest="model_version", help="version recorded in llmops-model.json "
                   "(default: the git sha)")
    g.add_argument("--model-dtype", dest="model_dtype", default="float32", choices=DTYPES,
                   help="dtype the weights are loaded and trained in (mixed precision computes in bf16/fp16)")
    g.add_argument("--attn-implementation", dest="attn_implementation", help="sdpa, eager, flash_attention_2...")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=_int, default=1)
    g.add_argument("--max-steps", dest="max_steps", type=_int, default=0, help="optimizer steps; overrides epochs")
    g.add_argument("--learning-rate", dest="learning_rate", type=_float, help="default 2e-5, or 2e-4 with LoRA")
    g.add_argument("--lr-scheduler", dest="lr_scheduler", default="cosine", choices=SCHEDULERS)
    g.add_argument("--warmup-ratio", dest="warmup_ratio", type=_float, default=0.03)
    g.add_argument("--warmup-steps", dest="warmup_steps", type=_int, help="overrides warmup-ratio")
    g.add_argument("--weight-decay", dest="weight_decay", type=_float, default=0.0)
    g.add_argument("--max-grad-norm", dest="max_grad_norm", type=_float, default=1.0, help="0 disables clipping")
    g.add_argument("--batch-size", dest="batch_size", type=_int, default=4, help="rows per process per micro-batch")
    g.add_argument("--gradient-accumulation-steps", dest="gradient_accumulation_steps", type=_int, default=1)
    g.add_argument("--max-seq-length", dest="max_seq_length", type=_int, default=1024)
    g.add_argument("--packing", type=lambda t: parse_bool("packing", t), default=True,
                   help="pack short samples into rows of max-seq-length (true/false)")
    g.add_argument("--truncation", type=lambda t: parse_bool("truncation", t), default=False,
                   help="cut samples longer than max-seq-length instead of failing (true/false)")
    g.add_argument("--mixed-precision", dest="mixed_precision", choices=MIXED,
                   help="default: what accelerate launch/config says, else no")
    g.add_argument("--gradient-checkpointing", dest="gradient_checkpointing",
                   type=lambda t: parse_bool("gradient-checkpointing", t), default=False)
    g.add_argument("--seed", type=_int, default=42)
    g = p.add_argument_group("LoRA")
    g.add_argument("--lora", type=lambda t: parse_bool("lora", t), default=False)
    g.add_argument("--lora-r", dest="lora_r", type=_int, default=16)
    g.add_argument("--lora-alpha", dest="lora_alpha", type=_int, default=32)
    g.add_argument("--lora-dropout", dest="lora_dropout", type=_float, default=0.05)
    g.add_argument("--lora-target-modules", dest="lora_target_modules", default="all-linear")
    g.add_argument("--merge-lora", dest="merge_lora", type=lambda t: parse_bool("merge-lora", t), default=True,
                   help="save LoRA merged into full weights (adapter kept under adapter/); false: adapter only")
    g = p.add_argument_group("checkpoints, eval and logs")
    g.add_argument("--checkpoint-dir", dest="checkpoint_dir", help="default: <output_dir>.checkpoints")
    g.add_argument("--checkpoint-steps", dest="checkpoint_steps", type=_int, default=500, help="0: none")
    g.add_argument("--keep-checkpoints", dest="keep_checkpoints", type=_int, default=2, help="0: keep all")
    g.add_argument("--resume-from-checkpoint", dest="resume_from_checkpoint",
                   help="a checkpoint folder, or latest (newest in checkpoint-dir; none yet = start fresh)")
    g.add_argument("--eval-steps", dest="eval_steps", type=_int, default=0, help="0: at each epoch end")
    g.add_argument("--logging-steps", dest="logging_steps", type=_int, default=10)
    g = p.add_argument_group("launch and preflight")
    add("--launch", action="store_true", help="run the preflight, then start this script under accelerate launch")
    add("--preflight-only", dest="preflight_only", action="store_true")
    add("--accelerate-config", dest="accelerate_config", help="accelerate config file (DeepSpeed/FSDP/multi-node)")
    add("--num-processes", dest="num_processes", type=_int, help="default: the config's, else one per GPU")
    add("--main-process-port", dest="main_process_port", type=_int,
        help="rendezvous port on the main machine (default: the config's, else a free port on one machine)")
    add("--num-machines", dest="num_machines", type=_int, help="machines in the run (default: the config's, else 1)")
    add("--machine-rank", dest="machine_rank", type=_int, help="this machine's rank, 0 = the main machine "
        "(default: the config's, else 0)")
    add("--main-process-ip", dest="main_process_ip", help="address of machine rank 0 that every machine reaches "
        "(needed with several machines)")
    add("--distributed-timeout", dest="distributed_timeout", type=_int, default=DEFAULT_TIMEOUT,
        help="seconds a process waits for a peer that stopped answering before every rank fails")
    add("--allow-cpu", dest="allow_cpu", type=lambda t: parse_bool("allow-cpu", t), default=False,
        help="run without GPUs (GPU checks skipped)")
    add("--min-free-gpu-memory", dest="min_free_gpu_memory", type=_float, default=2.0, help="GiB per GPU")
    add("--preflight", default="error", choices=PREFLIGHT, help="what a failed GPU check does")
    return p


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Cross-flag checks and derived defaults; raises UsageError with the fix."""
    positive = ("epochs", "batch_size", "gradient_accumulation_steps", "max_seq_length", "logging_steps", "lora_r",
                "lora_alpha")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("max_steps", "checkpoint_steps", "keep_checkpoints", "eval_steps", "weight_decay", "max_grad_norm",
                 "warmup_ratio", "lora_dropout", "min_free_gpu_memory"):
        if getattr(args, name) < 0:
            raise UsageError(f"{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        raise UsageError(f"warmup-steps must not be negative, got {args.warmup_steps}")
    if args.warmup_ratio >= 1:
        raise UsageError(f"warmup-ratio is a fraction of the steps (< 1), got {args.warmup_ratio}")
    if args.learning_rate is None:
        args.learning_rate = 2e-4 if args.lora else 2e-5
    if args.learning_rate <= 0:
        raise UsageError(f"learning-rate must be positive, got {args.learning_rate}")
    if args.num_processes is not None and args.num_processes < 1:
        raise UsageError(f"num-processes must be at least 1, got {args.num_processes}")
    if args.num_machines is not None and args.num_machines < 1:
        raise UsageError(f"num-machines must be at least 1, got {args.num_machines}")
    if args.machine_rank is not None and not 0 <= args.machine_rank < (args.num_machines or 1):
        raise UsageError(f"machine-rank must be 0 to num-machines - 1 ({(args.num_machines or 1) - 1}), got "
                         f"{args.machine_rank}", "give each machine's job its own rank, 0 for the main machine")
    if args.distributed_timeout < 1:
        raise UsageError(f"distributed-timeout must be at least 1 second, got {args.distributed_timeout}")
    if args.main_process_port is not None and not 0 < args.main_process_port < 65536:
        raise UsageError(f"main-process-port must be 1-65535, got {args.main_process_port}")
    if args.accelerate_config and not Path(args.accelerate_config).is_file():
        raise UsageError(f"accelerate-config file not found: {args.accelerate_config}",
                         "commit the config (e.g. configs/accelerate/deepspeed-zero2.yaml) and give its path")
    if Path(args.output_dir).name in ("", ".", ".."):
        raise UsageError(f"output-dir must name a new folder, got {args.output_dir!r}", "e.g. models/<git sha>")
    from llmops.paths import workspace_path

    for flag in ("output_dir", "checkpoint_dir"):  # ../../x is refused; an absolute path is a choice, and noted
        if getattr(args, flag):
            where, outside = workspace_path(getattr(args, flag), flag.replace("_", "-"))
            if outside and os.environ.get("RANK", "0") in ("", "0"):
                log.info(f"{flag.replace('_', '-')} is outside the workspace: writing to {where}")
    return args


def checkpoint_root(args: argparse.Namespace) -> Path:
    if args.checkpoint_dir:
        return Path(args.checkpoint_dir)
    out = Path(args.output_dir)
    return out.with_name(out.name + ".checkpoints")


def partial_dir(output_dir: str | Path) -> Path:
    out = Path(output_dir)
    return out.with_name(out.name + ".partial")


def run_config(args: argparse.Namespace) -> dict:
    """The settings recorded in llmops-model.json (launch-only flags left out)."""
    skip = {"launch", "preflight_only", "preflight", "min_free_gpu_memory", "main_process_port", "overwrite",
            "machine_rank", "main_process_ip"}
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}
