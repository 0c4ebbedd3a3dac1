"""Checkpoint folders: ``<checkpoint-dir>/step-00000120`` holding accelerate's state (model, optimizer, scheduler,
RNG, sampler) plus ``trainer_state.json`` (step, tokens seen, log history and the settings a resume must match).

A checkpoint is written as ``.step-N.tmp`` and renamed once complete, so a crash mid-save never leaves a folder that
``latest`` would pick. ``keep`` bounds how many are kept (oldest removed first).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from llmops.errors import InputError

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"step-(\d+)")
# Settings that fix which rows a step number means; a checkpoint is only resumable when they match. The world
# size is not one of them: the rows of a step depend on the global batch (samples_per_step = batch-size x
# processes x gradient-accumulation-steps) only, so 2 processes x batch 2 resume as 1 process x batch 4.
RESUME_KEYS = ("dataset_sha256", "samples_per_step", "max_seq_length", "packing", "seed", "lora")
_SPLIT = ("batch_size", "num_processes", "gradient_accumulation_steps")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.fullmatch(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def resolve(spec: str | None, root: str | Path) -> Path | None:
    """``latest`` (None when there is none yet), a checkpoint folder, or nothing."""
    if not spec:
        return None
    if spec == "latest":
        return latest(root)
    path = Path(spec)
    if not (path / STATE_FILE).is_file():
        have = ", ".join(p.name for p in list_checkpoints(root)[-3:]) or "none"
        raise InputError(f"resume-from-checkpoint: {spec} is not a complete checkpoint (no {STATE_FILE})",
                         f"use latest or one of the checkpoints in {root} (newest: {have})")
    return path


def read_state(path: Path) -> dict:
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def check_compatible(path: Path, state: dict, current: dict) -> None:
    written = dict(state.get("resume", {}))
    if "samples_per_step" not in written and all(k in written for k in _SPLIT):  # checkpoints of older versions
        written["samples_per_step"] = written["batch_size"] * written["num_processes"] * \
            written["gradient_accumulation_steps"]
    diffs = [f"{k}: checkpoint {written.get(k)!r}, now {current.get(k)!r}" for k in RESUME_KEYS
             if written.get(k) != current.get(k)]
    if diffs:
        split = " x ".join(f"{k} {written.get(k)}" for k in _SPLIT)
        hint = "resume with the same data and settings, or start fresh without resume-from-checkpoint"
        if any(d.startswith("samples_per_step") for d in diffs):
            hint = (f"keep the global batch: the checkpoint was written with {split}; any batch-size x processes x "
                    f"gradient-accumulation-steps = {written.get('samples_per_step')} resumes it")
        raise InputError(f"cannot resume from {path}: the run differs from the one that wrote it ({'; '.join(diffs)})",
                         hint)


def save(accelerator, root: Path, step: int, state: dict, keep: int) -> Path:
    """Every process calls this; accelerate writes each process's part, the main process finishes the folder."""
    final, tmp = step_dir(root, step), root / f".step-{step:08d}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        rotate(root, keep)
    accelerator.wait_for_everyone()
    return final


def rotate(root: Path, keep: int) -> list[Path]:
    found = list_checkpoints(root)
    doomed = found[:-keep] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
