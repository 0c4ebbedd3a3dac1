"""What a training run tells people: a JSON-lines log (``train-log.jsonl`` in the output folder, one object per
logging step or eval), the step outputs and a step-summary section with the final numbers, a loss curve (Mermaid
xychart) and a table of the logged steps; the GPU preflight's annotations and table (``preflight``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from llmops import gha

LOG_FILE = "train-log.jsonl"


class JsonLog:
    """Append-only JSON lines; only the main process writes (others get ``path=None``)."""

    def __init__(self, path: Path | None, history: list[dict] | None = None):
        self.path = path
        self.records: list[dict] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        for record in history or []:
            self.write(record)

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def downsample(points: list, n: int) -> list:
    if len(points) <= n:
        return list(points)
    idx = sorted({round(i * (len(points) - 1) / (n - 1)) for i in range(n)})
    return [points[i] for i in idx]


def _fmt(value, digits: int = 4):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return value


def summary(meta: dict, records: list[dict], model_dir: str) -> gha.Summary:
    m = meta["metrics"]
    s = gha.Summary().heading(f"train-on-self-hosted-gpu: model {meta['model_version'][:12]}")
    hw = meta["hardware"]
    s.table(["", ""], [
        ["model folder", f"`{model_dir}`"],
        ["base model", meta["base_model"]],
        ["weights", meta["weights"] + (f" (LoRA r={meta['config']['lora_r']})" if meta["config"].get("lora") else "")],
        ["data", f"{meta['dataset']['samples']} samples, {meta['dataset']['tokens']} tokens ({meta['format']})"],
        ["steps / epochs", f"{m['steps']} / {_fmt(m['epochs'], 3)}"],
        ["train loss", _fmt(m["train_loss"])],
        ["eval loss", _fmt(m["eval_loss"])],
        ["tokens seen", m["tokens_seen"]],
        ["tokens/s", _fmt(m["tokens_per_second"], 5)],
        ["wall time", f"{m['wall_seconds']:.0f} s"],
        ["hardware", f"{hw['num_processes']} x {hw['device']}" + (f" ({hw['gpus'][0]})" if hw.get("gpus") else "")],
    ])
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    if len(train) >= 2:
        pts = downsample(train, 40)
        s.xychart("Training loss", [r["step"] for r in pts], {"train loss": [r["loss"] for r in pts]}, y_label="loss")
    if len(evals) >= 2:
        pts = downsample(evals, 40)
        s.xychart("Eval loss", [r["step"] for r in pts], {"eval loss": [r["eval_loss"] for r in pts]},
                  y_label="loss")
    if train:
        eval_at = {r["step"]: r["eval_loss"] for r in evals}
        rows = [[r["step"], _fmt(r["loss"]), _fmt(r["learning_rate"], 3), _fmt(r["tokens_per_second"], 5),
                 _fmt(eval_at.get(r["step"]))] for r in downsample(train, 20)]
        s.table(["step", "loss", "learning rate", "tokens/s", "eval loss"], rows)
        s.text(f"Full log: `{model_dir}/{LOG_FILE}`")
    return s


def outputs(meta: dict, model_dir: str) -> dict:
    return {"model-dir": model_dir, "model-version": meta["model_version"],
            "train-loss": meta["metrics"]["train_loss"], "eval-loss": meta["metrics"]["eval_loss"],
            "result": "success"}


def publish(meta: dict, records: list[dict], model_dir: str) -> None:
    """The finished run's step summary and step outputs."""
    summary(meta, records, model_dir).write()
    gha.set_outputs(outputs(meta, model_dir))


def preflight(result, mode: str) -> None:
    """The GPU preflight's findings as annotations (errors as warnings unless ``mode`` is error) and GPU table."""
    for f in result.findings:
        text = f.message + (f" — fix: {f.hint}" if f.hint else "")
        level = f.level if (f.level != "error" or mode == "error") else "warning"
        gha.annotate(level, text, title="preflight")
    if result.gpus and os.environ.get("GITHUB_STEP_SUMMARY"):
        gha.Summary().heading("GPU preflight", 3).table(
            ["GPU", "name", "free MiB", "total MiB"],
            [[g.index, g.name, g.free_mib, g.total_mib] for g in result.gpus]).write()
