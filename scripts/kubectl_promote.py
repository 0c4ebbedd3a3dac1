"""kubectl-promote: promote a model version on Kubernetes, verify it, and roll back by itself when it is bad.

    python scripts/kubectl_promote.py --deployment llm-server --namespace prod --image models/llm:abc123 \\
        --model-version v7 --verdict verdict.json --health-url http://llm-server.prod.svc/health --smoke-test
    python scripts/kubectl_promote.py --deployment llm-server --namespace prod --rollback [--to-revision 3]

Exit codes: 0 promoted (or dry run), 1 the verdict said no / the new version failed and was rolled back / the
target is locked by another run, 2 bad input (a verdict for another version, missing RBAC verbs: nothing written),
3 API server unreachable past --retry-budget (re-run the same command: it resumes), 130 cancelled (after rolling
back, or leaving a written rollback in place). Every option also reads its action input from ``INPUT_<NAME>`` (see
actions/kubectl-promote/action.yml). Defaults come from llmops.k8s.promote.Options / llmops.k8s.health.HealthSpec
(a test checks action.yml against this parser).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    from llmops.k8s.client import DEFAULT_RETRY_BUDGET
    from llmops.k8s.health import HealthSpec as H
    from llmops.k8s.promote import Options as O  # noqa: N814 - the defaults' one source

    p = argparse.ArgumentParser(prog="kubectl_promote.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument_group("cluster")
    a.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, then $KUBECONFIG)")
    a.add_argument("--kubeconfig-data", help="kubeconfig content or its base64, from a secret (prefer the env "
                   "var INPUT_KUBECONFIG_DATA over the command line)")
    a.add_argument("--context", help="kubeconfig context (default: its current-context)")
    a.add_argument("--allow-exec", action="store_true", help="let a kubeconfig-data secret run exec / auth-provider "
                   "commands and read a tokenFile (EKS, GKE); a kubeconfig file always may (logged)")
    a.add_argument("--namespace", help="namespace (default: the context's, else 'default')")
    a.add_argument("--request-timeout", type=float, default=30.0, help="seconds per API call (default 30)")
    a.add_argument("--retry-budget", type=float, default=DEFAULT_RETRY_BUDGET,
                   help="seconds to keep retrying an unreachable or failing API server before exit 3 (default 60)")
    t = p.add_argument_group("what to change")
    t.add_argument("--deployment", required=True, help="Deployment name (blue-green: base name of <name>-blue/-green)")
    t.add_argument("--container", help="container to change (default: the only one)")
    t.add_argument("--image", help="new container image")
    t.add_argument("--model-version", help="new model version (env MODEL_VERSION or a pod annotation)")
    t.add_argument("--model-uri", help="new model URI (env MODEL_URI or a pod annotation)")
    t.add_argument("--version-via", choices=("env", "annotation"), default="env",
                   help="how the model version reaches the pods (default env)")
    t.add_argument("--verdict", help="evaluate-and-gate verdict JSON; its result must be pass")
    t.add_argument("--force", action="store_true", help="promote without a passing verdict")
    t.add_argument("--git-sha", default=os.environ.get("GITHUB_SHA", ""), help="commit recorded on the revision")
    t.add_argument("--run-url", default="", help="workflow run URL recorded on the revision (default: this run)")
    s = p.add_argument_group("strategy")
    s.add_argument("--strategy", choices=("rolling", "blue-green"), default=O.strategy)
    s.add_argument("--service", help="blue-green: the Service to switch (default: the deployment name)")
    s.add_argument("--color-label", default=O.color_label, help="blue-green: the selector label key (default color)")
    s.add_argument("--replicas", type=gha.positive_int, default=None,
                   help="rolling: also scale the Deployment to this many replicas (e.g. a canary left at 0)")
    s.add_argument("--scale-down-delay", type=float, default=O.scale_down_delay,
                   help="blue-green: seconds the old colour stays scaled (and the new one probed) after the switch")
    s.add_argument("--timeout", type=float, default=O.timeout, help="seconds to wait for a rollout (default 600)")
    s.add_argument("--no-rollback", action="store_true", help="leave a failed promotion as it is")
    s.add_argument("--rollback", action="store_true", help="roll back instead of promoting")
    s.add_argument("--to-revision", type=gha.positive_int, default=0, help="rollback: revision (default previous)")
    s.add_argument("--dry-run", action="store_true", help="server-side dry run; print the diff, change nothing")
    s.add_argument("--lock-wait", type=float, default=O.lock_wait, help="seconds to queue behind another run's lock")
    s.add_argument("--lock-ttl", type=float, default=O.lock_ttl,
                   help="seconds the lock (a Lease, renewed every ttl/3) outlives a holder that died (default 30)")
    s.add_argument("--break-lock", action="store_true",
                   help="take the lock even from a live holder (it is named in a warning)")
    h = p.add_argument_group("health check")
    h.add_argument("--health-url", help="URL that must answer 2xx after the rollout ({color} = the new colour)")
    h.add_argument("--smoke-test", action="store_true", help="also POST a completion to <health origin>/v1/completions")
    h.add_argument("--smoke-prompt", default=H.prompt, help="prompt for the smoke completion")
    h.add_argument("--smoke-model", help="model field of the smoke completion (default: the id /v1/models proved)")
    h.add_argument("--health-timeout", type=float, default=H.budget, help="seconds to become healthy (default 120)")
    h.add_argument("--health-interval", type=float, default=H.interval, help="seconds between probes (default 2)")
    return p


def _run_url() -> str:
    env = os.environ
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        return f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}/actions/runs/" \
               f"{env['GITHUB_RUN_ID']}"
    return ""


def _log(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.kubeconfig_data:
        from llmops.k8s.kubeconfig import mask_secret
        mask_secret(args.kubeconfig_data)
    from llmops.k8s.change import ChangeSpec
    from llmops.k8s.client import connect
    from llmops.k8s.health import HealthSpec
    from llmops.k8s.promote import Options, Outcome, promote, rollback
    from llmops.k8s.verdict import require_pass

    for flag in ("timeout", "health_timeout", "health_interval", "request_timeout", "retry_budget", "lock_ttl"):
        gha.parse_number("--" + flag.replace("_", "-"), getattr(args, flag), minimum=0.001)
    if args.rollback and (args.image or args.model_version or args.model_uri):
        raise UsageError("--rollback restores an earlier revision; it takes no --image/--model-version",
                         "drop the image/model-version inputs in rollback mode")
    verdict = None if args.rollback else require_pass(args.verdict, force=args.force,
                                                      model_version=args.model_version, model_uri=args.model_uri)
    change = ChangeSpec(image=args.image, model_version=args.model_version, model_uri=args.model_uri,
                        version_via=args.version_via, container=args.container, git_sha=args.git_sha,
                        run_url=args.run_url or _run_url(), verdict_sha256=verdict.sha256 if verdict else "",
                        verdict_result=verdict.result if verdict else ("forced" if args.force else ""))
    if not args.rollback:
        change.validate()
    health = HealthSpec(args.health_url, smoke=args.smoke_test, prompt=args.smoke_prompt, model=args.smoke_model,
                        budget=args.health_timeout, interval=args.health_interval,
                        expect_version=None if args.rollback else args.model_version) if args.health_url else None
    opts = Options(deployment=args.deployment, change=change, strategy=args.strategy, service=args.service,
                   color_label=args.color_label, timeout=args.timeout, health=health,
                   auto_rollback=not args.no_rollback, dry_run=args.dry_run, lock_wait=args.lock_wait,
                   lock_ttl=args.lock_ttl, break_lock=args.break_lock, scale_down_delay=args.scale_down_delay,
                   replicas=args.replicas, to_revision=args.to_revision, log=_log)
    out = Outcome()
    kube = connect(kubeconfig=args.kubeconfig, kubeconfig_data=args.kubeconfig_data, context=args.context,
                   namespace=args.namespace, timeout=args.request_timeout, retry_budget=args.retry_budget,
                   allow_exec=args.allow_exec)
    try:
        _log(f"{'rollback' if args.rollback else 'promote'} {args.strategy} {kube.namespace}/{args.deployment} "
             f"via {kube.source}")
        (rollback if args.rollback else promote)(kube, opts, out)
    finally:
        kube.close()
        for text in out.warnings:
            gha.warning(text)
        gha.set_outputs(out.outputs())
        _summary(args, out, kube.calls)
    if out.diff:
        _log(out.diff)
    elif args.dry_run:
        _log("dry run: no difference")
    gha.set_output("result", out.result)
    return 0


def _summary(args: argparse.Namespace, out, calls: int) -> None:
    title = "kubectl-promote" + (" rollback" if args.rollback else "")
    s = gha.Summary().heading(f"{title}: {args.deployment} ({out.result or 'failed'})")
    s.table(["previous", "new", "revision", "rolled back", "API calls"],
            [[out.previous_version, out.new_version, out.revision, out.rolled_back, calls]])
    if out.proof:
        s.text(f"**Serving proof:** {out.proof}")
    if out.message:
        s.text(out.message)
    if out.steps:
        s.table(["step", "detail"], out.steps)
    if out.diff:
        s.details("What would change (server-side dry run)", "```diff\n" + out.diff.rstrip() + "\n```")
    if gha.in_runner() or os.environ.get("GITHUB_STEP_SUMMARY"):
        s.write()
    else:
        for step, detail in out.steps:
            _log(f"  {step}: {detail}")


if __name__ == "__main__":
    raise SystemExit(run_script(main, title="kubectl-promote"))
