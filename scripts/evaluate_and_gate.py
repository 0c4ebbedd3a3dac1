"""evaluate-and-gate: evaluate a model (local folder, OpenAI-compatible endpoint or a predictions file) on
reference data and gate it on thresholds and on a noise-aware comparison with a baseline verdict.

    python scripts/evaluate_and_gate.py --model-dir models/abc --eval-data data/eval.jsonl \
        --metrics accuracy,bleu,rouge --thresholds thresholds.yml --baseline prod-verdict.json

Flags are kebab-case; the seed's --model_dir / --eval_data (and any --snake_case spelling) still work.

Exit codes: 0 pass (or inconclusive with --on-inconclusive pass), 1 the gate failed, 2 bad input, 3 the endpoint
is unreachable. Every option also reads INPUT_<NAME> (how the action passes its inputs).
"""
from __future__ import annotations

import argparse

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.errors import UsageError
from llmops.inputs import split_list

LATENCY_SAMPLE = 30  # rows timed alone: enough for the gate's default min_samples (30) to decide a latency limit


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_argument_group("what to evaluate (exactly one)")
    src.add_argument("--model-dir", "--model_dir", dest="model_dir", help="local model folder (save_pretrained)")
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://llm.staging.svc:8000")
    src.add_argument("--predictions", help="JSONL of predictions made elsewhere (id or prompt + prediction)")
    p.add_argument("--eval-data", "--eval_data", dest="eval_data", help="eval JSONL: {prompt, reference} or chat rows")
    p.add_argument("--metrics", default="accuracy,bleu,rouge", help="comma list (default: accuracy,bleu,rouge); "
                   "also exact_match, chrf, rouge1/2/l, perplexity, loss, latency_p50/95/99, tokens_per_s, "
                   "output_length, cost, hf:<name>, and the assertions json_valid, json_schema, regex, contains, "
                   "not_contains, starts_with, tool_call_valid (specs per row or in metric_options)")
    p.add_argument("--thresholds", action="append", help="YAML/JSON file or pairs like accuracy>=0.6,latency_p95<=2")
    p.add_argument("--baseline", help="an earlier verdict JSON (e.g. production's) to compare with, sample by sample")
    p.add_argument("--sample-size", dest="sample_size", type=gha.positive_int, default=0,
                   help="evaluate this many rows (stable, seeded choice; 0 = all)")
    p.add_argument("--report", default="evaluate-verdict.json", help="where to write the verdict JSON")
    p.add_argument("--predictions-out", dest="predictions_out", help="also write the predictions here (JSONL)")
    gen = p.add_argument_group("generation")
    gen.add_argument("--max-new-tokens", dest="max_new_tokens", type=gha.positive_int, default=64)
    gen.add_argument("--batch-size", dest="batch_size", type=gha.positive_int, default=16, help="local backend")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", dest="top_p", type=float, default=1.0)
    gen.add_argument("--device", help="local backend: cpu, cuda, cuda:1 (default: cuda when present)")
    gen.add_argument("--endpoint-model", dest="endpoint_model", default="", help="model name sent to the endpoint")
    gen.add_argument("--api-key-env", dest="api_key_env", default="OPENAI_API_KEY",
                     help="environment variable holding the endpoint's API key")
    gen.add_argument("--concurrency", type=gha.positive_int, default=8, help="endpoint: requests in flight")
    gen.add_argument("--latency-sample", dest="latency_sample", type=gha.positive_int, default=LATENCY_SAMPLE,
                     help=f"endpoint: rows sent one at a time first, whose times are the latency metrics (the "
                     f"server's service time, not queueing); the rest run at --concurrency and give the throughput. "
                     f"Seeded choice; 0 = every row (default {LATENCY_SAMPLE})")
    gen.add_argument("--timeout", type=float, default=60.0, help="endpoint: seconds per request")
    gen.add_argument("--retries", type=gha.positive_int, default=3, help="endpoint: retries with backoff")
    jud = p.add_argument_group("judge (metrics judge_pairwise, judge_rubric)")
    jud.add_argument("--judge-endpoint", dest="judge_endpoint", help="OpenAI-compatible base URL of the judge model")
    jud.add_argument("--judge-model-dir", dest="judge_model_dir", help="or a local model folder as the judge")
    jud.add_argument("--judge-model", dest="judge_model", default="", help="model name sent to the judge endpoint")
    jud.add_argument("--judge-prompt", dest="judge_prompt", help="pairwise prompt file with {question}, "
                     "{reference}, {answer_a}, {answer_b} (default: llmops/eval/judge.py PAIRWISE_PROMPT)")
    jud.add_argument("--judge-rubric", dest="judge_rubric", help="rubric file for judge_rubric (1-5 scores)")
    jud.add_argument("--judge-api-key-env", dest="judge_api_key_env", default="OPENAI_API_KEY",
                     help="environment variable holding the judge endpoint's API key")
    gate = p.add_argument_group("gate")
    gate.add_argument("--alpha", help="family-wise significance level: the chance that a candidate of the "
                      "baseline's quality fails the gate (default 0.05)")
    gate.add_argument("--correction", choices=["westfall-young", "holm", "none"], help="how the primary metrics' "
                      "p values are adjusted together (default westfall-young; none = each metric at alpha)")
    gate.add_argument("--primary", help="comma list of the metrics that decide (family-wise tested; default: "
                      "every metric with a paired test)")
    gate.add_argument("--guard", help="comma list of metrics compared on their own that only warn")
    gate.add_argument("--min-samples", dest="min_samples", help="fewer samples: inconclusive (default 30)")
    gate.add_argument("--on-inconclusive", dest="on_inconclusive", choices=["fail", "pass"],
                      help="exit code policy for an inconclusive result (default fail)")
    gate.add_argument("--min-effect", dest="min_effect", help="drops smaller than this never fail, e.g. "
                      "bleu=1,accuracy=0.02,perplexity=2%%")
    gate.add_argument("--allow-setting-changes", dest="allow_setting_changes", action="store_true",
                      help="compare with a baseline generated with other settings (max new tokens, temperature, "
                      "top p, chat vs completions, system prompt); refused with exit 2 otherwise")
    gate.add_argument("--bootstrap", help="bootstrap resamples (default 1000)")
    gate.add_argument("--seed", help="seed of sub-sampling, bootstrap and sampled generation (default 0)")
    gate.add_argument("--normalize", help="accuracy/exact_match normalisation: comma list of strip, lower, punct, "
                      "articles, whitespace (or none)")
    gate.add_argument("--match", choices=["exact", "prefix", "contains"], help="accuracy/exact_match: how the "
                      "normalised prediction must match the reference")
    gate.add_argument("--price-input", dest="price_input", type=float, help="price per 1k prompt tokens (cost)")
    gate.add_argument("--price-output", dest="price_output", type=float, help="price per 1k output tokens (cost)")
    return p


def gate_config(args):
    from llmops.eval.config import build_config, effect_amount, set_gate_option
    from llmops.eval.metrics import resolve_names

    config = build_config(args.thresholds)
    for key in ("alpha", "min_samples", "on_inconclusive", "bootstrap", "seed", "correction", "primary", "guard"):
        if getattr(args, key) not in (None, ""):
            set_gate_option(config, key, getattr(args, key), f"--{key.replace('_', '-')}")
    for part in split_list(args.min_effect):
        name, sep, amount = part.partition("=")
        if not sep:
            raise UsageError(f"malformed --min-effect {part.strip()!r}", "write metric=amount, e.g. bleu=1 or "
                             "perplexity=2%")
        for metric in resolve_names([name]):
            effect_amount(amount, 1.0, metric)
            config.min_effect[metric] = amount.strip()
    for key, value in (("input_per_1k_tokens", args.price_input), ("output_per_1k_tokens", args.price_output)):
        if value is not None:
            config.prices[key] = value
    for metric in ("accuracy", "exact_match"):
        for opt in ("normalize", "match"):
            if getattr(args, opt):
                config.metric_options.setdefault(metric, {})[opt] = getattr(args, opt)
    return config


def make_backend(args):
    chosen = [name for name in ("model_dir", "endpoint", "predictions") if getattr(args, name)]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --model-dir, --endpoint or --predictions"
                         + (f" (got {', '.join('--' + c.replace('_', '-') for c in chosen)})" if chosen else ""),
                         "model-dir evaluates a local model, endpoint a deployed one, predictions a file of outputs")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise UsageError("--temperature must be >= 0 and --top-p in (0, 1]")
    if args.model_dir:
        from llmops.eval.backends.local import LocalBackend

        return LocalBackend(args.model_dir, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, top_p=args.top_p, seed=args.seed_value,
                            device=args.device)
    if args.endpoint:
        from llmops.eval.backends.endpoint import EndpointBackend

        return EndpointBackend(args.endpoint, model=args.endpoint_model, max_new_tokens=args.max_new_tokens,
                               temperature=args.temperature, top_p=args.top_p, concurrency=args.concurrency,
                               timeout=args.timeout, retries=args.retries, api_key_env=args.api_key_env,
                               latency_sample=args.latency_sample, seed=args.seed_value)
    return None


def served_identity(backend, requested: str) -> dict:
    """The verdict's model fields for an endpoint: what the server said it served, beside the URL.

    ``version`` (what kubectl-promote checks) is the one ``X-Model-Version`` the replies carried, or the
    ``model_version`` of the one model ``/v1/models`` lists (our reference server); several versions within one run
    (a rollout under way) name none, with a warning.
    """
    ident = backend.identity
    fields = {"version": ident.version(), "requested_model": requested or None, **ident.to_json()}
    if len(ident.versions) > 1:
        gha.warning("the endpoint answered as several model versions during the evaluation ("
                    + ", ".join(f"{v}: {n} replies" for v, n in ident.versions.items()) + "); the verdict names "
                    "no version. Evaluate when the rollout is complete")
    return fields


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    if not args.eval_data:
        raise UsageError("--eval-data is required", "pass the eval JSONL ({prompt, reference} rows)")
    from llmops.eval.backends import Generation, Generations
    from llmops.eval.data import load_eval_data, load_predictions
    from llmops.eval.gate import Baseline, exit_code
    from llmops.eval.metrics import resolve_names
    from llmops.eval.report import outputs, summary
    from llmops.eval.runner import (
        build_run,
        build_verdict,
        compute_metrics,
        read_model_info,
        write_json,
        write_predictions,
    )

    config = gate_config(args)
    args.seed_value = config.seed
    requested = resolve_names(split_list(args.metrics) + config.metrics)
    requested += [m for m in [*config.thresholds, *config.primary, *config.guard] if m not in requested]
    if not requested:
        raise UsageError("no metrics to compute", "pass --metrics, e.g. accuracy,bleu,rouge")
    from llmops.paths import refuse_input_as_output
    from llmops.redact import redact_url

    inputs = {"eval data": args.eval_data, "predictions file": args.predictions, "baseline verdict": args.baseline,
              "thresholds file": [t for t in args.thresholds or [] if "=" not in t and "<" not in t and ">" not in t]}
    refuse_input_as_output(args.report, inputs, "--report")
    refuse_input_as_output(args.predictions_out, {**inputs, "report": args.report}, "--predictions-out")
    backend = make_backend(args)  # flags are checked before any file is read or model loaded
    baseline = Baseline.load(args.baseline) if args.baseline else None
    from llmops.eval.judge import JudgeConfig

    judge = JudgeConfig(endpoint=args.judge_endpoint, model_dir=args.judge_model_dir, model=args.judge_model,
                        prompt_file=args.judge_prompt, rubric_file=args.judge_rubric,
                        api_key_env=args.judge_api_key_env, concurrency=args.concurrency, timeout=args.timeout)
    data = load_eval_data(args.eval_data, sample_size=args.sample_size, seed=config.seed)
    from llmops.eval import settings

    generation = None if backend is None else settings.generation_settings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, samples=data.samples)
    settings_check = None
    if baseline is not None:  # before generating: a refused comparison costs nothing
        settings_check = settings.check(generation, baseline.verdict, baseline.path,
                                        allow=args.allow_setting_changes)
        if settings_check["note"]:
            gha.warning(settings_check["note"])
    ref_scores = None
    if backend is None:
        rows = load_predictions(args.predictions, data.samples)
        gens = Generations([Generation(r["prediction"], r["latency_s"], r["prompt_tokens"], r["output_tokens"])
                            for r in rows], None, {"backend": "predictions", "path": args.predictions})
        model = {"predictions": args.predictions}
    else:
        gens = backend.generate(data.samples)
        if backend.name == "local" and {"perplexity", "loss"} & set(requested):
            ref_scores = backend.score(data.samples)
        info = read_model_info(args.model_dir)
        model = {"version": info.get("model_version") or info.get("version"), "path": args.model_dir,
                 "endpoint": redact_url(args.endpoint or ""), "info": info}
        if gens.served is not None:
            model.update(served_identity(backend, args.endpoint_model))
        model = {k: v for k, v in model.items() if v}
    run = build_run(data, gens, ref_scores=ref_scores, prices=config.prices, backend=gens.info["backend"],
                    baseline=baseline, judge=judge)
    results, skipped = compute_metrics(run, requested, config)
    verdict = build_verdict(data=data, gens=gens, results=results, skipped=skipped, config=config,
                            baseline=baseline, model=model, generation=generation, settings_check=settings_check)
    path = str(write_json(args.report, verdict))
    if args.predictions_out:
        write_predictions(args.predictions_out, data, gens)
    summary(verdict, path).write()
    for name, m in verdict["metrics"].items():
        if m["status"] != "pass":
            (gha.error if m["status"] == "fail" else gha.warning)(f"{name}: " + "; ".join(m["reasons"]))
    gha.set_outputs(outputs(verdict, path))
    return exit_code(verdict["result"], config)


if __name__ == "__main__":
    raise SystemExit(run_script(main, title="evaluate-and-gate"))
