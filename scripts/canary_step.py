"""canary-step: shift traffic to a canary gradually and let Prometheus decide, statistically.

Modes: run (walk the steps), step (one window), analyse (one window against live Prometheus, read-only: the window
record to --report, exit 0 pass / 1 fail), what-if (replay windows from a file or stdin through the same judge,
no cluster, no Prometheus: one JSON line per window), abort (all traffic back to stable now, as a failed canary's
rollback does; exit 0 once it is there). Exit codes: 0 promote or continue, 1 rollback, 2 bad
configuration or input (what-if: with the line number), 3 Prometheus or the API server unreachable (traffic is
returned to stable first). See docs/actions/canary-step.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Sequence

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.errors import UsageError

LIMITS = {  # check -> (flag for the absolute limit, flag for the relative limit, defaults)
    "error_rate": ("max-error-rate", "max-error-rate-increase", "0.05", "0.2"),
    "latency_p99": ("max-latency-p99", "max-latency-increase", "off", "0.5"),
    "ttft_p95": ("max-ttft-p95", "max-ttft-increase", "off", "off"),
    "cost_per_request": ("max-cost-per-request", "max-cost-increase", "off", "off"),
    "quality": ("min-quality", "max-quality-decrease", "off", "off"),
}


def duration_seconds(text: str) -> float:
    """argparse type: seconds as a number or a duration (30s, 5m, 1h)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"must be seconds or a duration such as 30s or 5m, got {text!r}")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1s, got {text!r}")
    return value


def limit(text: str) -> float | None:
    """argparse type: a non-negative number, or off/none to disable the limit."""
    if str(text).strip().lower() in ("off", "none", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or off, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    value = float(text) if re.fullmatch(r"\s*0?\.\d+\s*", str(text)) else -1.0
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 0.5 such as 0.01, got {text!r}")
    return value


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


MODES = ("run", "step", "analyse", "what-if", "abort")
PAUSE_ACTIONS = ("keep", "stable")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="canary_step.py", description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--mode", choices=MODES, default="run",
      help="run: walk all steps; step: one window; analyse: one read-only window against Prometheus; what-if: "
           "replay --windows through the judge, no cluster; abort: return all traffic to stable now (no Prometheus "
           "needed)")
    a("--windows", default="", help="what-if: JSON lines of window counts, or a canary-report.json (- = stdin)")
    a("--provider", default="", help="traffic provider: nginx, istio, gateway-api or replicas")
    a("--namespace", default="default")
    a("--stable", default="", help="stable Deployment")
    a("--canary", default="", help="canary Deployment")
    a("--route", default="", help="Ingress / VirtualService / HTTPRoute carrying the weights")
    a("--stable-service", default="", help="Service of the stable pods (default: the stable Deployment's name)")
    a("--canary-service", default="", help="Service of the canary pods (default: the canary Deployment's name)")
    a("--canary-version", default="", help="model_version of the canary (default: its pod label version-label)")
    a("--stable-version", default="", help="model_version of stable (default: its pod label version-label)")
    a("--version-label", default="", help="pod label with the version (default: MODEL_VERSION env)")
    a("--container", default="", help="container to promote when the pods have several")
    a("--steps", default="5,10,25,50,75,100", help="canary weights in percent")
    a("--interval", type=duration_seconds, default=60.0, help="analysis window per step (30s, 5m)")
    a("--weight", type=gha.positive_int, default=None, help="step mode: analyse this weight instead")
    a("--prometheus-url", default="")
    a("--prometheus-token", default="")
    a("--prometheus-timeout", type=duration_seconds, default=10.0)
    a("--kubeconfig", default="")
    a("--kubeconfig-data", default="", help="kubeconfig content (a secret; YAML or base64)")
    a("--context", default="")
    a("--allow-exec", action="store_true", help="let kubeconfig-data run exec / auth-provider commands (EKS, GKE)")
    a("--kube-timeout", type=duration_seconds, default=15.0)
    a("--min-requests", type=gha.positive_int, default=50,
      help="canary requests a step must serve (over its windows) before the next weight")
    a("--alpha", type=fraction, default=0.01, help="false-rollback rate of the whole canary")
    a("--beta", type=fraction, default=0.01,
      help="chance that a canary detect-increase worse than stable reaches the last step")
    a("--detect-increase", type=positive, default=1.0,
      help="relative increase that must be caught before the last step (1.0: twice the stable's rate)")
    a("--failure-limit", type=gha.positive_int, default=1, help="failed gauge windows tolerated before rollback")
    a("--successes", type=gha.positive_int, default=1, help="windows each step needs at least")
    a("--inconclusive-limit", type=gha.positive_int, default=5,
      help="run mode: pause after this many waiting windows in a row at one weight (0: never)")
    a("--on-pause", choices=PAUSE_ACTIONS, default="keep",
      help="keep the weight while paused, or return traffic to stable (progress kept either way)")
    a("--on-no-data", choices=("fail", "wait", "pass"), default="fail")
    for absolute, relative, d_abs, d_rel in LIMITS.values():
        a(f"--{absolute}", type=limit, default=limit(d_abs))
        a(f"--{relative}", type=limit, default=limit(d_rel))
    a("--metrics-preset", default="llmops",
      help="the server's metrics: llmops, vllm, tgi, sglang, triton, istio or nginx (llmops.canary.presets)")
    a("--canary-selector", default="", help="PromQL label matchers of the canary's series (default: the preset's)")
    a("--stable-selector", default="", help="PromQL label matchers of the stable's series (with canary-selector)")
    a("--queries", default="", help="YAML/JSON file overriding PromQL templates")
    a("--restart", action="store_true", help="ignore the recorded progress and start at the first weight")
    a("--rollout-timeout", type=duration_seconds, default=300.0)
    a("--report", default="canary-report.json")
    return p


def judge_config(args: argparse.Namespace):
    """The judge's and the policy's settings: the same for a live run and a what-if replay."""
    from llmops.canary import queries
    from llmops.canary.decision import Policy, parse_steps
    from llmops.canary.judge import AnalysisConfig, Limits

    limits = {name: Limits(getattr(args, a.replace("-", "_")), getattr(args, r.replace("-", "_")))
              for name, (a, r, _, _) in LIMITS.items()}
    for name in ("error_rate", "latency_p99", "ttft_p95"):
        rel = limits[name].relative
        if rel is not None and rel >= args.detect_increase:
            raise UsageError(f"{LIMITS[name][1]} {rel:g} must be below detect-increase {args.detect_increase:g}",
                             "detect-increase is the increase that must be caught; it has to be larger than the "
                             "increase that is tolerated")
    if limits["error_rate"].max is not None and limits["error_rate"].max >= 1:
        raise UsageError("max-error-rate must be below 1 (a fraction: 0.05 = 5%)")
    analysis = AnalysisConfig(alpha=args.alpha, beta=args.beta, detect=args.detect_increase,
                              on_no_data=args.on_no_data, limits=limits, templates=dict(queries.DEFAULTS))
    policy = Policy(steps=parse_steps(args.steps), failure_limit=args.failure_limit,
                    successes=max(1, args.successes), inconclusive_limit=args.inconclusive_limit,
                    min_requests=args.min_requests, on_pause=args.on_pause)
    return analysis, policy


TEMPLATE_FLAGS = {"latency_seconds": "max-latency-p99 and max-latency-increase",
                  "ttft_seconds": "max-ttft-p95 and max-ttft-increase",
                  "cost_per_request": "max-cost-per-request and max-cost-increase",
                  "quality": "min-quality and max-quality-decrease"}


def selection_from(args: argparse.Namespace, analysis):
    """metrics-preset / canary-selector / stable-selector / queries, resolved and checked without a cluster."""
    from llmops.canary import selection
    from llmops.canary.analysis import needed_templates

    return selection.resolve(args.metrics_preset, canary_selector=args.canary_selector,
                             stable_selector=args.stable_selector, queries_path=args.queries,
                             needed=needed_templates(analysis), flags=TEMPLATE_FLAGS)


def config_from(args: argparse.Namespace):
    from llmops.canary.routers import PROVIDERS, Target
    from llmops.canary.runner import CanaryConfig

    explicit = bool(args.canary_selector or args.stable_selector)
    required = ("prometheus-url",) if args.mode == "analyse" and explicit else \
        ("stable", "canary", "prometheus-url") if args.mode == "analyse" else \
        ("provider", "stable", "canary") if args.mode == "abort" else \
        ("provider", "stable", "canary", "prometheus-url")
    for flag in required:
        if not getattr(args, flag.replace("-", "_")):
            raise UsageError(f"{flag} is required in mode {args.mode}",
                             f"pass {flag}, or mode what-if with windows to replay counts offline")
    if args.provider and args.provider not in PROVIDERS:
        raise UsageError(f"unknown traffic provider {args.provider!r}", f"use one of: {', '.join(PROVIDERS)}")
    if args.weight is not None and (args.mode not in ("step", "analyse") or not 0 < args.weight <= 100):
        raise UsageError("weight is for mode step (or analyse) and must be 1..100", "drop weight, or pass mode: step")
    if (args.stable or args.canary) and args.stable == args.canary:
        raise UsageError("stable and canary name the same Deployment", "pass two different Deployments")
    if args.windows:
        raise UsageError("windows is for mode what-if", "drop windows, or pass mode: what-if")
    analysis, policy = judge_config(args)
    sel = selection_from(args, analysis)
    analysis = sel.analysis(analysis)
    target = Target(args.namespace, args.stable, args.canary, args.stable_service, args.canary_service, args.route)
    return CanaryConfig(target=target, provider=args.provider, mode=args.mode, interval=args.interval,
                        policy=policy, analysis=analysis, canary_version=args.canary_version,
                        stable_version=args.stable_version, version_label=args.version_label,
                        container=args.container or None, weight=args.weight,
                        restart=args.restart, rollout_timeout=args.rollout_timeout, selection=sel)


def what_if(args: argparse.Namespace) -> int:
    """Replay windows through the judge: one JSON line per window on stdout, flushed as soon as it is judged."""
    from llmops.canary import whatif
    from llmops.errors import InputError

    if not args.windows:
        raise UsageError("mode what-if needs windows: a file of JSON lines or a canary-report.json (- = stdin)")
    analysis, policy = judge_config(args)
    analysis = dataclasses.replace(analysis, histograms_optional=True)  # the protocol: each histogram optional
    name = "stdin" if args.windows == "-" else args.windows

    def emit(record: dict) -> None:
        sys.stdout.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        sys.stdout.flush()

    try:
        stream = sys.stdin if args.windows == "-" else open(args.windows, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read windows file {args.windows}: {exc.strerror}", "check the windows path") from None
    with stream:
        decision = whatif.replay(whatif.read_windows(stream, name), analysis, policy, emit, name)
    if gha.in_runner():  # outside a runner stdout is the JSON lines alone
        gha.set_outputs({"result": decision, "decision": decision})
    return 1 if decision == "rollback" else 0


def analyse_once(args: argparse.Namespace, cfg) -> int:
    """One read-only window against live Prometheus: the window record to --report; 0 pass, 1 fail."""
    from llmops.canary import probe
    from llmops.canary.kube import connect
    from llmops.canary.prom import Prometheus

    prom = Prometheus(args.prometheus_url, timeout=args.prometheus_timeout, token=args.prometheus_token or None)
    kube = None
    if probe.needs_cluster(cfg) or (cfg.provider and cfg.weight is None):
        kube = connect(kubeconfig=args.kubeconfig or None, context=args.context or None, namespace=args.namespace,
                       kubeconfig_data=args.kubeconfig_data or None, timeout=args.kube_timeout,
                       allow_exec=args.allow_exec)
    try:
        record = probe.run(cfg, prom, kube, log=lambda text: print(text, file=sys.stderr, flush=True))
    finally:
        if kube is not None:
            kube.close()
    try:
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, default=str)
            fh.write("\n")
    except OSError as exc:
        gha.warning(f"could not write the analysis record to {args.report}: {exc.strerror}")
    window = record["window"]
    gha.set_outputs({"result": record["result"], "decision": record["result"], "reason": record["reason"],
                     "canary-requests": window["requests"]["canary"],
                     "canary-error-rate": window["error_rate"]["canary"], "report-path": args.report})
    summary = gha.Summary()
    summary.heading(f"canary-step analyse: {record['result']}")
    summary.text(f"{record['canary_version']} (canary) vs {record['stable_version']} (stable), last "
                 f"{window['window']}: {record['reason']}")
    summary.table(["check", "outcome", "reason"], [[c["name"], c["outcome"], c["reason"]] for c in window["checks"]])
    summary.write()
    print(json.dumps({"result": record["result"], "requests": window["requests"], "errors": window["errors"],
                      "failed": record["failed"]}))
    return 1 if record["result"] == "fail" else 0


def main(argv: Sequence[str] | None = None) -> int:
    from llmops.canary import report
    from llmops.canary.kube import connect
    from llmops.canary.prom import Prometheus
    from llmops.canary.runner import CanaryRun

    args = parse_args(build_parser(), argv)
    from llmops.redact import url_secrets

    for secret in [args.prometheus_token, *url_secrets(args.prometheus_url)]:
        gha.mask(secret)
    if args.mode == "what-if":
        return what_if(args)
    cfg = config_from(args)
    if args.mode == "analyse":
        return analyse_once(args, cfg)
    prom = (Prometheus(args.prometheus_url, timeout=args.prometheus_timeout, token=args.prometheus_token or None)
            if args.prometheus_url or args.mode != "abort" else None)
    kube = connect(kubeconfig=args.kubeconfig or None, context=args.context or None, namespace=args.namespace,
                   kubeconfig_data=args.kubeconfig_data or None, timeout=args.kube_timeout,
                   allow_exec=args.allow_exec)
    run = CanaryRun(cfg, kube, prom)
    with run.signals:  # a cancel's second signal must cut neither the cleanup nor the record short
        try:
            decision = run.abort() if args.mode == "abort" else run.execute()
        except BaseException as exc:
            cancelled = isinstance(exc, KeyboardInterrupt)
            with run.signals.cleanup():
                record = report.build(run, error="cancelled" if cancelled else
                                      str(getattr(exc, "message", exc)) or type(exc).__name__, cancelled=cancelled)
                report.write(args.report, record)
                if run.actions:
                    report.summary(record).write()
            raise
        finally:
            kube.close()
        with run.signals.cleanup():
            record = report.build(run)
            report.write(args.report, record)
            gha.set_outputs(report.outputs(record, args.report))
            report.summary(record).write()
    if decision == "rollback" and args.mode != "abort":  # abort: exit 0 once all traffic is on stable
        gha.error(f"canary rolled back: {record['reason']}")
        return 1
    return 0

if __name__ == "__main__":
    raise SystemExit(run_script(main, title="canary-step"))
