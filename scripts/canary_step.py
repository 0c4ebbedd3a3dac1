"""canary-step: shift traffic to a canary gradually and let Prometheus decide, statistically.

Exit codes: 0 promote or continue, 1 rollback, 2 bad configuration, 3 Prometheus or the API server unreachable
(traffic is returned to stable first). See docs/actions/canary-step.md.
"""
from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from llmops import gha
from llmops.cli import run_script
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="canary_step.py", description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--mode", choices=("step", "run"), default="run", help="step: one window; run: walk all steps")
    a("--provider", required=True, help="traffic provider: nginx, istio, gateway-api or replicas")
    a("--namespace", default="default")
    a("--stable", required=True, help="stable Deployment")
    a("--canary", required=True, help="canary Deployment")
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
    a("--prometheus-url", required=True)
    a("--prometheus-token", default="")
    a("--prometheus-timeout", type=duration_seconds, default=10.0)
    a("--kubeconfig", default="")
    a("--kubeconfig-data", default="", help="kubeconfig content (a secret; YAML or base64)")
    a("--context", default="")
    a("--allow-exec", action="store_true", help="let kubeconfig-data run exec / auth-provider commands (EKS, GKE)")
    a("--kube-timeout", type=duration_seconds, default=15.0)
    a("--min-requests", type=gha.positive_int, default=50, help="fewer canary requests in a window: wait")
    a("--alpha", type=fraction, default=0.01, help="significance of the error-rate tests")
    a("--failure-limit", type=gha.positive_int, default=1, help="failed windows tolerated before rollback")
    a("--successes", type=gha.positive_int, default=1, help="consecutive passing windows to advance a step")
    a("--inconclusive-limit", type=gha.positive_int, default=5, help="run mode: pause after this many")
    a("--on-no-data", choices=("fail", "wait", "pass"), default="fail")
    for absolute, relative, d_abs, d_rel in LIMITS.values():
        a(f"--{absolute}", type=limit, default=limit(d_abs))
        a(f"--{relative}", type=limit, default=limit(d_rel))
    a("--queries", default="", help="YAML/JSON file overriding PromQL templates")
    a("--restart", action="store_true", help="ignore the recorded progress and start at the first weight")
    a("--rollout-timeout", type=duration_seconds, default=300.0)
    a("--report", default="canary-report.json")
    return p


def config_from(args: argparse.Namespace):
    from llmops.canary import queries
    from llmops.canary.analysis import AnalysisConfig, Limits
    from llmops.canary.decision import Policy, parse_steps
    from llmops.canary.routers import PROVIDERS, Target
    from llmops.canary.runner import CanaryConfig

    if args.provider not in PROVIDERS:
        raise UsageError(f"unknown traffic provider {args.provider!r}", f"use one of: {', '.join(PROVIDERS)}")
    if args.weight is not None and (args.mode != "step" or not 0 < args.weight <= 100):
        raise UsageError("weight is for mode step and must be 1..100", "drop weight, or pass mode: step")
    if args.stable == args.canary:
        raise UsageError("stable and canary name the same Deployment", "pass two different Deployments")
    limits = {name: Limits(getattr(args, a.replace("-", "_")), getattr(args, r.replace("-", "_")))
              for name, (a, r, _, _) in LIMITS.items()}
    analysis = AnalysisConfig(min_requests=args.min_requests, alpha=args.alpha, on_no_data=args.on_no_data,
                              limits=limits, templates=queries.load(args.queries or None))
    policy = Policy(steps=parse_steps(args.steps), failure_limit=args.failure_limit,
                    successes=max(1, args.successes), inconclusive_limit=args.inconclusive_limit)
    target = Target(args.namespace, args.stable, args.canary, args.stable_service, args.canary_service, args.route)
    return CanaryConfig(target=target, provider=args.provider, mode=args.mode, interval=args.interval,
                        policy=policy, analysis=analysis, canary_version=args.canary_version,
                        stable_version=args.stable_version, version_label=args.version_label,
                        container=args.container or None, weight=args.weight,
                        restart=args.restart, rollout_timeout=args.rollout_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    from llmops.canary import report
    from llmops.canary.kube import Kube
    from llmops.canary.prom import Prometheus
    from llmops.canary.runner import CanaryRun

    args = gha.parse_args(build_parser(), argv)
    from llmops.redact import url_secrets

    for secret in [args.prometheus_token, *url_secrets(args.prometheus_url)]:
        gha.mask(secret)
    cfg = config_from(args)
    prom = Prometheus(args.prometheus_url, timeout=args.prometheus_timeout, token=args.prometheus_token or None)
    kube = Kube(args.kubeconfig or None, args.context or None, namespace=args.namespace,
                kubeconfig_data=args.kubeconfig_data or None, timeout=args.kube_timeout, allow_exec=args.allow_exec)
    run = CanaryRun(cfg, kube, prom)
    try:
        decision = run.execute()
    except BaseException as exc:
        record = report.build(run, error=str(getattr(exc, "message", exc)) or type(exc).__name__)
        report.write(args.report, record)
        if run.actions:
            report.summary(record).write()
        raise
    finally:
        kube.close()
    record = report.build(run)
    report.write(args.report, record)
    gha.set_outputs(report.outputs(record, args.report))
    report.summary(record).write()
    if decision == "rollback":
        gha.error(f"canary rolled back: {record['reason']}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, title="canary-step"))
