"""The pipeline's deployment half, after the gates: staging -> integration test -> canary -> production -> a
deliberately bad canary rolled back. The same scripts the workflow template's staging and production jobs run.

    kubectl-promote staging       the Deployment gets the new model; /health must report its version
    integration test              bin/integration_test.py against the staging server
    kubectl-promote canary        the canary Deployment gets it (no traffic yet: the route sends 100% to stable)
    canary-step, one window a call (``--mode step``, as workflows-templates/canary.yml runs it), until it promotes:
                                  each window prints one line: weight, requests / errors per side, the decision
    production                    canary-step promoted: the stable Deployment runs the new version
    a bad canary                  the same model under version <v>-faulty whose pods answer a share of requests with
                                  HTTP 500 (``LLMOPS_FAULT_ERROR_RATE`` in its pod template, read by the reference
                                  server); canary-step must roll it back: weight 0, production keeps <v>

The walk is the decision's, not ours: a window's counts come from canary-step's own record (``--report``), which
Prometheus supplied. A healthy canary that is rolled back, or a faulty one that is promoted, stops the run.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmops.errors import CheckFailed, InfraError

FAULT_ENV = ("LLMOPS_FAULT_ERROR_RATE", "LLMOPS_FAULT_SEED")


@dataclass
class CanaryPlan:
    """How the canary walks (each default lives here; bin/run_pipeline.py shows them in --help)."""

    steps: str = "25,50,100"
    interval: str = "10s"
    min_requests: int = 20
    fault_error_rate: float = 0.3
    bad_canary: bool = True
    max_windows: int = 40


def window_line(window: dict) -> str:
    """``weight  25%: stable 212 requests / 0 errors, canary 71 / 0: pass -> continue (passed at 25%; next ...)``."""
    counts = window.get("counts") or {}

    def side(role: str) -> tuple[str, str]:
        c = counts.get(role) or {}
        req, err = c.get("requests"), c.get("errors")
        return ("?" if req is None else str(req)), ("0" if err is None and req is not None else
                                                    "?" if err is None else str(err))

    (sr, se), (cr, ce) = side("stable"), side("canary")
    return (f"weight {window.get('weight', '?'):>3}%: stable {sr} requests / {se} errors, canary {cr} / {ce}: "
            f"{window.get('outcome')} -> {window.get('decision')} ({window.get('reason')})")


def wait_for_version(url: str, version: str, timeout: float = 300) -> None:
    """Until ``url``/health reports ``version`` (a rollout's pods replaced)."""
    import requests

    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            with requests.get(f"{url}/health", timeout=3) as resp:
                last = resp.json().get("model_version") if resp.ok else f"HTTP {resp.status_code}"
            if last == version:
                return
        except (requests.RequestException, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise InfraError(f"{url}/health did not report model_version {version} within {timeout:.0f}s (last: {last})",
                     "check the Deployment's pods (kubectl rollout status) and the server's logs")


class Deploy:
    """The stages above on one ``Endpoints`` (the sandbox's, or a real cluster's from the flags)."""

    def __init__(self, pipe, scripts: Path, ep, plan: CanaryPlan, log_dir: Path):
        self.pipe, self.scripts, self.ep, self.plan = pipe, scripts, ep, plan
        self.py = sys.executable
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def _promote(self, stage: str, namespace: str, deployment: str, version: str, model_dir: Path, health: str,
                 *extra: str) -> None:
        self.pipe.run(stage, [self.py, str(self.scripts / "kubectl_promote.py"), "--kubeconfig", self.ep.kubeconfig,
                              "--namespace", namespace, "--deployment", deployment, "--model-version", version,
                              "--model-uri", str(model_dir.resolve()), "--health-url", f"{health}/health", *extra])

    def staging(self, model_dir: Path, version: str) -> None:
        ep = self.ep
        self.pipe.banner(f"kubectl-promote to staging: {ep.staging_namespace}/{ep.staging_deployment} -> {version}")
        self._promote("promote staging", ep.staging_namespace, ep.staging_deployment, version, model_dir,
                      ep.staging_url, "--verdict", str(model_dir / "verdict.json"))
        self.pipe.banner("integration test against the staging server")
        self.pipe.run("integration test", [self.py, str(self.scripts.parent / "bin" / "integration_test.py"), "--endpoint",
                                           ep.staging_url])

    def walk(self, stage: str, version: str) -> dict:
        """canary-step one window a call until it promotes or rolls back; returns its last record."""
        ep, plan = self.ep, self.plan
        report = self.log_dir / f"canary-{version}.json"
        argv = [self.py, str(self.scripts / "canary_step.py"), "--mode", "step", "--provider", ep.provider,
                "--namespace", ep.production_namespace, "--stable", ep.stable, "--canary", ep.canary,
                "--route", ep.route, "--canary-version", version, "--prometheus-url", ep.prometheus_url,
                "--kubeconfig", ep.kubeconfig, "--steps", plan.steps, "--interval", plan.interval,
                "--min-requests", str(plan.min_requests), *ep.canary_args, "--report", str(report)]
        print("    $ " + " ".join(Path(a).name if a == self.py else a for a in argv) + "   (once per window)",
              flush=True)
        log = self.log_dir / f"canary-{version}.log"
        report.unlink(missing_ok=True)
        with self.pipe.timer(stage), open(log, "w", encoding="utf-8") as out:
            for i in range(plan.max_windows):
                # the first window starts this walk afresh (progress an earlier run stored on the canary is dropped)
                code = self.pipe.call(argv + ["--restart"] * (i == 0), stdout=out, stderr=subprocess.STDOUT)
                record = json.loads(report.read_text()) if report.is_file() else {}
                window = (record.get("windows") or [{}])[-1]
                if code not in (0, 1) or not window:
                    out.flush()
                    print(log.read_text(encoding="utf-8", errors="replace")[-3000:], flush=True)
                    raise InfraError(f"canary-step exited {code} without a decision (its output is above)",
                                     f"all of it is in {log}")
                print("    " + window_line(window), flush=True)
                if record.get("decision") in ("promote", "rollback") or record.get("paused"):
                    return record
        raise CheckFailed(f"the canary reached no decision in {plan.max_windows} windows",
                          f"more traffic or fewer min-requests; canary-step's output is in {log}")

    def canary(self, model_dir: Path, version: str) -> None:
        ep = self.ep
        self.pipe.banner(f"canary: {ep.production_namespace}/{ep.canary} gets {version}, canary-step walks the "
                         f"weights {self.plan.steps} (live traffic; Prometheus decides)")
        self._promote("promote canary", ep.production_namespace, ep.canary, version, model_dir, ep.canary_url,
                      "--verdict", str(model_dir / "verdict.json"), "--replicas", "1")
        record = self.walk("canary", version)
        if record.get("decision") != "promote":
            raise CheckFailed(f"the canary of {version} was not promoted ({record.get('decision')}: "
                              f"{record.get('reason')}); all traffic is on stable",
                              f"canary-step's record: {self.log_dir / f'canary-{version}.json'}")
        if ep.stable_url:
            wait_for_version(ep.stable_url, version)
        print(f"    production: {ep.production_namespace}/{ep.stable} runs {version} (canary weight back to 0)")

    def bad_canary(self, model_dir: Path, version: str) -> None:
        ep, rate = self.ep, self.plan.fault_error_rate
        bad = f"{version}-faulty"
        self.pipe.banner(f"a deliberately bad canary: {bad} answers {rate:.0%} of requests with HTTP 500 "
                         "(LLMOPS_FAULT_ERROR_RATE in its pod template); canary-step must roll it back")
        env = [{"name": "MODEL_VERSION", "value": bad}, {"name": "MODEL_URI", "value": str(model_dir.resolve())},
               {"name": "LLMOPS_FAULT_ERROR_RATE", "value": f"{rate:g}"}, {"name": "LLMOPS_FAULT_SEED", "value": "7"}]
        with self.pipe.timer("deploy bad canary"):
            self._patch_canary(env, 1)
            wait_for_version(ep.canary_url, bad)
        print(f"    {ep.production_namespace}/{ep.canary} serves {bad}", flush=True)
        try:
            record = self.walk("bad canary", bad)
        finally:  # the fault leaves the canary's template again, whatever the walk decided
            self._patch_canary([{"name": n, "$patch": "delete"} for n in FAULT_ENV], None)
        if record.get("decision") != "rollback":
            raise CheckFailed(f"canary-step did not roll back the faulty canary {bad} ({record.get('decision')}: "
                              f"{record.get('reason')})", "see the windows above")
        print(f"    rolled back: all traffic on {ep.stable} again (canary weight 0); production keeps {version}")

    def _patch_canary(self, env: list[dict], replicas: int | None) -> None:
        """A strategic merge on the canary container's env list (keyed by name) through the official client."""
        from llmops.k8s.client import connect

        ep = self.ep
        with connect(kubeconfig=ep.kubeconfig, namespace=ep.production_namespace) as kube:
            dep = kube.read_deployment(ep.production_namespace, ep.canary)
            name = dep["spec"]["template"]["spec"]["containers"][0]["name"]
            body: dict = {"spec": {"template": {"spec": {"containers": [{"name": name, "env": env}]}}}}
            if replicas is not None:
                body["spec"]["replicas"] = replicas
            kube.call(kube.apps.patch_namespaced_deployment, ep.canary, ep.production_namespace, body,
                      _content_type="application/strategic-merge-patch+json",
                      what=f"patch deployment {ep.production_namespace}/{ep.canary}")


@contextmanager
def held_signals():
    """Ignore SIGINT / SIGTERM for the block (a cleanup that a second Ctrl-C must not cut short); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def release(pipe, scripts: Path, cfg, model_dir: Path, version: str, base: Path) -> None:
    """Staging -> integration test -> canary -> production [-> a bad canary], in the sandbox or on a cluster
    (``cfg`` is the pipeline's PipelineConfig)."""
    if not cfg.sandbox:
        return _release(pipe, scripts, cfg, cfg.release, model_dir, version)
    from llmops.sandbox.world import Sandbox

    pipe.banner("sandbox: a local control plane, Prometheus, reference servers and live traffic")
    box = Sandbox(base, rate=cfg.sandbox_rate)
    try:
        ep = pipe.timed("start sandbox", box.start)
        print(f"    kubeconfig {ep.kubeconfig}; {ep.staging_namespace}/{ep.staging_deployment} and "
              f"{ep.production_namespace}/{ep.stable} serve the base model (version 'base'); Prometheus "
              f"{ep.prometheus_url}; {cfg.sandbox_rate:g} requests/s split by the Ingress's canary weight")
        print("    the servers share this machine's cores, so their latencies measure the machine more than the "
              "model: canary-step judges errors, and latency against an absolute p99 limit "
              f"({' '.join(ep.canary_args)})", flush=True)
        (cfg.out_dir / "sandbox.json").write_text(json.dumps(box.running(), indent=2) + "\n")
        _release(pipe, scripts, cfg, ep, model_dir, version)
        state = box.describe()
        (cfg.out_dir / "sandbox.json").write_text(json.dumps(state, indent=2) + "\n")
        stable = state["deployments"][f"{ep.production_namespace}/{ep.stable}"]["model_version"]
        print(f"    at the end: {ep.production_namespace}/{ep.stable} runs {stable} (its server says "
              f"{state['health']['stable']}), canary weight {state['canary_weight']}%, "
              f"{sum(state['requests_sent'].values())} requests served; {cfg.out_dir / 'sandbox.json'}")
    finally:
        with held_signals():
            box.stop()
        print("    sandbox stopped: control plane, Prometheus, model servers and traffic", flush=True)


def _release(pipe, scripts: Path, cfg, ep, model_dir: Path, version: str) -> None:
    deploy = Deploy(pipe, scripts, ep, cfg.canary, cfg.out_dir / "canary")
    deploy.staging(model_dir, version)
    load = None
    if ep.traffic_url:  # a real cluster: requests through its ingress, which splits them by the weight
        from llmops.sandbox.traffic import Splitter

        load = Splitter(lambda: 0, ep.traffic_url, ep.traffic_url, cfg.sandbox_rate)
        load.start()
    try:
        deploy.canary(model_dir, version)
        if cfg.canary.bad_canary:
            deploy.bad_canary(model_dir, version)
    finally:
        if load is not None:
            load.stop()
