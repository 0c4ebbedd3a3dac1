"""The runner's flow on in-memory Deployments (replicas provider): rollback, promote, resume, pause, and that a
crash, a cancel or a burst of signals always leaves the traffic on stable. Real servers: tests/integration."""
from __future__ import annotations

import os
import signal

import pytest

from llmops.canary import state
from llmops.canary.analysis import AnalysisConfig, Limits
from llmops.canary.decision import Policy
from llmops.canary.routers import Target
from llmops.canary.routers.replicas import ORIGINAL
from llmops.canary.runner import CanaryConfig, CanaryRun
from llmops.errors import InfraError, UsageError
from tests.unit.canary_fakes import FakeKube, FakeProm, counts, deployment

GOOD = counts(4000, 40, 36000, 360)  # 1 % on both, enough errors per window to show "not 2x worse" at once
BAD = counts(400, 60, 3600, 10)


def setup(values, mode="run", steps=(10, 50, 100), sleep=None, **policy):
    policy.setdefault("min_requests", 50)
    kube = FakeKube({"llm-stable": deployment("llm-stable", "v1", 10, "model:v1"),
                     "llm-canary": deployment("llm-canary", "v2", 0, "model:v2")})
    prom = FakeProm(values)
    cfg = CanaryConfig(target=Target("prod", "llm-stable", "llm-canary"), provider="replicas", mode=mode,
                       interval=5, policy=Policy(steps=steps, **policy),
                       analysis=AnalysisConfig(limits={"error_rate": Limits(0.05, 0.2)}), version_label="version")
    run = CanaryRun(cfg, kube, prom, sleep=sleep or (lambda s: None), log=lambda t: None, promoter=fake_promote)
    return run, kube, prom


def fake_promote(kube, namespace, stable, canary, *, container, timeout, log):
    """Stands in for kubectl-promote (exercised for real in tests/integration): the canary's image on stable."""
    image = kube.deployments[canary]["spec"]["template"]["spec"]["containers"][0]["image"]
    kube.patch_deployment(namespace, stable, {"spec": {"template": {"spec": {"containers": [
        {"name": "server", "image": image}]}}}})
    return {"deployment": stable, "image": image}


def replicas(kube):
    return kube.deployments["llm-stable"]["spec"]["replicas"], kube.deployments["llm-canary"]["spec"]["replicas"]


def test_bad_canary_rolls_back_and_leaves_stable_whole():
    run, kube, _ = setup(BAD, failure_limit=1)
    assert run.execute() == "rollback"
    assert len(run.windows) == 1 and run.final_weight == 0  # shown worse: no failed window is "tolerated"
    assert replicas(kube) == (10, 0)
    assert ORIGINAL not in kube.deployments["llm-stable"]["metadata"]["annotations"]
    assert state.load(kube, "prod", "llm-canary").phase == "rolled_back"
    assert run.actions[0] == "canary weight set to 0"
    # A re-run of the same version does not start over by itself.
    rerun = CanaryRun(run.cfg, kube, FakeProm(BAD), sleep=lambda s: None, log=lambda t: None)
    assert rerun.execute() == "rollback" and "already rolled back" in rerun.decision.reason


def test_healthy_canary_is_promoted():
    run, kube, _ = setup(GOOD)
    seen = []
    run.sleep = lambda s: seen.append(replicas(kube))
    assert run.execute() == "promote"
    assert seen == [(9, 1), (5, 5), (0, 10)]  # 10 %, 50 %, 100 % of the pods
    stable = kube.deployments["llm-stable"]
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "model:v2"
    assert replicas(kube) == (10, 0)
    assert "Deployment llm-stable promoted to v2 through kubectl-promote (model:v2)" in run.actions
    assert state.load(kube, "prod", "llm-canary").phase == "promoted"


def test_prometheus_down_mid_run_returns_traffic_and_keeps_progress_for_resume():
    run, kube, prom = setup(GOOD)

    def sleep(_):
        if run.progress.step_index == 1:  # second step: Prometheus goes away
            prom.down = True
    run.sleep = sleep
    with pytest.raises(InfraError):
        run.execute()
    assert replicas(kube) == (10, 0) and run.final_weight == 0
    saved = state.load(kube, "prod", "llm-canary")
    assert saved.phase == "interrupted" and saved.weight == 50
    resumed, _, _ = setup(GOOD)
    weights = []
    resumed = CanaryRun(resumed.cfg, kube, FakeProm(GOOD), sleep=lambda s: weights.append(replicas(kube)),
                        log=lambda t: None, promoter=fake_promote)
    assert resumed.execute() == "promote"
    assert weights[0] == (5, 5) and "resumed at 50%" in resumed.actions[0]


def test_cancel_during_a_window_routes_to_stable():
    def cancel(_):
        raise KeyboardInterrupt
    run, kube, _ = setup(GOOD, sleep=cancel)
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert replicas(kube) == (10, 0)
    assert state.load(kube, "prod", "llm-canary").phase == "interrupted"


def test_prometheus_down_before_start_is_infra_and_routes_to_stable():
    run, kube, prom = setup(GOOD)
    prom.down = True
    with pytest.raises(InfraError):
        run.execute()
    assert replicas(kube) == (10, 0) and run.actions == ["interrupted: all traffic returned to stable"]
    assert state.load(kube, "prod", "llm-canary").step_index == 0  # a re-run starts at the first weight


def test_prometheus_down_when_resuming_a_canary_with_traffic_routes_it_back():
    run, kube, _ = setup(GOOD, mode="step")
    assert run.execute() == "continue" and replicas(kube) == (9, 1)  # left at 10 % for the next step
    again = CanaryRun(run.cfg, kube, FakeProm(GOOD), sleep=lambda s: None, log=lambda t: None)
    again.prom.down = True
    with pytest.raises(InfraError):
        again.execute()
    assert replicas(kube) == (10, 0) and "interrupted: all traffic returned to stable" in again.actions


def test_step_mode_analyses_one_window_and_pools_across_runs():
    run, kube, _ = setup(counts(30, 0, 270, 3), mode="step")
    assert run.execute() == "continue"
    assert len(run.windows) == 1 and run.windows[0]["outcome"] == "inconclusive"
    assert "20 more canary requests at 10%" in run.decision.reason
    assert replicas(kube) == (9, 1)  # still at 10 %, waiting for traffic
    run2 = CanaryRun(run.cfg, kube, FakeProm(counts(30, 0, 270, 3)), sleep=lambda s: None, log=lambda t: None)
    assert run2.execute() == "continue" and run2.progress.weight == 50 and run2.decision.advanced
    saved = state.load(kube, "prod", "llm-canary")
    assert saved.evidence["error_rate"]["relative"]["canary_requests"] == 60  # both runs' windows pooled


@pytest.mark.parametrize("on_pause,weight", [("keep", (9, 1)), ("stable", (10, 0))])
def test_run_pauses_after_too_many_waiting_windows(on_pause, weight):
    run, kube, _ = setup(counts(3, 0, 30, 0), inconclusive_limit=2, on_pause=on_pause)
    assert run.execute() == "continue" and run.decision.paused and len(run.windows) == 3
    assert replicas(kube) == weight
    saved = state.load(kube, "prod", "llm-canary")
    assert saved.phase == "paused" and saved.weight == 10
    assert any(a.startswith("paused") and on_pause in a for a in run.actions)


def test_signals_during_the_rollback_are_held_until_traffic_is_safe():
    run, kube, _ = setup(BAD)
    sent = []

    def burst(name, body):  # GitHub's cancel: SIGINT, then SIGTERM a few ms later, in the middle of the cleanup
        if not sent and name == "llm-canary" and body.get("spec", {}).get("replicas") == 0:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
    kube.on_patch = burst
    assert run.execute() == "rollback"
    assert sent and replicas(kube) == (10, 0)
    assert state.load(kube, "prod", "llm-canary").phase == "rolled_back"
    assert "2 signal(s) held until traffic was safe" in run.actions
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_a_second_signal_cannot_cut_the_cancel_cleanup_short():
    def cancel(_):
        os.kill(os.getpid(), signal.SIGINT)
    run, kube, _ = setup(GOOD, sleep=cancel)
    kube.on_patch = lambda name, body: os.kill(os.getpid(), signal.SIGTERM)  # during every cleanup patch
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    kube.on_patch = None
    assert replicas(kube) == (10, 0)
    assert state.load(kube, "prod", "llm-canary").phase == "interrupted"
    assert "interrupted: all traffic returned to stable" in run.actions


def test_a_mislabelled_stable_is_a_configuration_error_and_traffic_returns():
    run, kube, _ = setup({("requests", "v2"): 400, ("errors", "v2"): 0})
    with pytest.raises(UsageError, match="stable's requests series is absent"):
        run.execute()
    assert replicas(kube) == (10, 0)


def test_same_version_on_both_sides_is_a_usage_error():
    run, kube, _ = setup(GOOD)
    kube.deployments["llm-canary"]["spec"]["template"]["metadata"]["labels"]["version"] = "v1"
    with pytest.raises(UsageError, match="both have version 'v1'"):
        run.execute()
    assert replicas(kube) == (10, 0)


def test_the_record_says_how_the_run_ended_and_what_is_missing():
    from llmops.canary import report

    run, kube, _ = setup(counts(3, 0, 30, 0), inconclusive_limit=2)
    run.execute()
    record = report.build(run)
    text = report.summary(record).render()
    assert record["phase"] == "paused" and record["paused"] and "(paused)" in text
    assert "live traffic stays on a canary that is not validated yet" in text
    assert "Still missing to decide:** 41 more canary requests at 10%" in text
    assert "relative limit not evaluated yet" in text  # a check that cannot be evaluated says so
    assert report.outputs(record, "r.json")["paused"] is True
    # Prometheus goes away after a window said "continue": the record says error, like the result output.
    run, kube, prom = setup(GOOD)
    run.sleep = lambda _: setattr(prom, "down", run.progress.step_index == 1)
    with pytest.raises(InfraError) as exc:
        run.execute()
    record = report.build(run, error=exc.value.message)
    assert record["decision"] == "error" and record["windows"][-1]["decision"] == "continue"
    assert record["next_weight"] is None and record["phase"] == "interrupted"
