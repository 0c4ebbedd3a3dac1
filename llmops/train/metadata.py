"""``llmops-model.json``: what a trained model folder is, written by train and read by evaluate, serve and promote.

    from llmops.train.metadata import read_model_metadata
    meta = read_model_metadata("models/abc123")      # dict, validated; InputError (exit 2) with the fix otherwise
    meta["model_version"], meta["base_model"], meta["weights"], meta["metrics"]["eval_loss"]

Keys (schema_version 1):
    schema_version  int      1
    model_version   str      git sha by default, or --model-version
    base_model      str      model the run started from (folder or hub id)
    weights         str      "full" (model.safetensors + config.json, LoRA merged if any) or "adapter" (peft
                             adapter_model.safetensors only; load with peft on top of base_model)
    created_at      str      UTC ISO-8601
    format          str      prompt-completion | chat | text
    dataset         dict     files [{path, sha256, rows}], rows, samples, truncated, dropped, tokens, ...
    eval_dataset    dict|None same shape
    config          dict     every training setting
    metrics         dict     train_loss, eval_loss (None without eval data), steps, epochs, tokens_seen,
                             tokens_per_second, train_seconds, wall_seconds, peak_memory_mb
    libraries       dict     python, torch, transformers, accelerate, peft, llmops-actions
    hardware        dict     device, num_processes (the world size: all machines' processes), num_machines,
                             distributed_type (NO, MULTI_CPU, MULTI_GPU, FSDP, DEEPSPEED), gpus [names], cpu_count,
                             hostname (of machine 0, the only one that writes the folder)
    resumed_from    str|None checkpoint folder the run continued from
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

from llmops.errors import InputError

FILE = "llmops-model.json"
SCHEMA_VERSION = 1
REQUIRED: dict[str, type | tuple] = {
    "schema_version": int, "model_version": str, "base_model": str, "weights": str, "created_at": str,
    "format": str, "dataset": dict, "config": dict, "metrics": dict, "libraries": dict, "hardware": dict,
}
METRICS = ("train_loss", "eval_loss", "steps", "tokens_seen")


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "accelerate", "peft", "tokenizers", "llmops-actions"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_sha(cwd: str | Path | None = None) -> str | None:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_model_metadata(model_dir: str | Path, meta: dict) -> Path:
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    _validate(meta, Path(model_dir) / FILE)
    path = Path(model_dir) / FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _validate(meta: dict, path: Path) -> None:
    missing = [k for k in REQUIRED if k not in meta]
    wrong = [f"{k} should be {REQUIRED[k].__name__}" for k in REQUIRED
             if k in meta and not isinstance(meta[k], REQUIRED[k])]
    if missing or wrong:
        parts = (["missing " + ", ".join(missing)] if missing else []) + wrong
        raise InputError(f"{path}: invalid model metadata ({'; '.join(parts)})",
                         "re-run train-on-self-hosted-gpu to write a complete model folder", file=str(path))
    missing_metrics = [k for k in METRICS if k not in meta["metrics"]]
    if missing_metrics:
        raise InputError(f"{path}: metrics lack {', '.join(missing_metrics)}", file=str(path))
    if meta["weights"] not in ("full", "adapter"):
        raise InputError(f"{path}: weights must be full or adapter, got {meta['weights']!r}", file=str(path))


def read_model_metadata(model_dir: str | Path) -> dict:
    """Read and check a trained model folder's metadata; every problem is an InputError saying what to do."""
    folder = Path(model_dir)
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        hint = (f"{partial} exists: that training run did not finish (resume it)" if partial.exists()
                else "check model-dir: it should be the output-dir of a train-on-self-hosted-gpu run")
        raise InputError(f"model folder not found: {folder}", hint)
    path = folder / FILE
    if not path.is_file():
        raise InputError(f"{folder} has no {FILE}: it was not written by train-on-self-hosted-gpu",
                         "train it with train-on-self-hosted-gpu, or write the metadata for a model trained elsewhere")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})", "re-run training to rewrite it",
                         file=str(path), line=exc.lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}", file=str(path)) from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object", file=str(path))
    _validate(meta, path)
    if meta["schema_version"] > SCHEMA_VERSION:
        raise InputError(f"{path}: schema_version {meta['schema_version']} is newer than this llmops-actions "
                         f"understands ({SCHEMA_VERSION})", "use the same or a newer version of the actions")
    weights = ["adapter_model.safetensors"] if meta["weights"] == "adapter" else ["config.json", "*.safetensors"]
    absent = [w for w in weights if not any(folder.glob(w))]
    if absent:
        raise InputError(f"{folder}: metadata says {meta['weights']} weights but {', '.join(absent)} is missing",
                         "the folder was changed after training; copy it again from the training run")
    return meta
