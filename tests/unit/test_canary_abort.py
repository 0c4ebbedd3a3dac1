"""Mode abort on in-memory Deployments (replicas provider): all traffic back to stable from mid-walk, paused or a
canary never started, recorded as rolled back, idempotent, signals held. Real API server and CLI:
tests/integration/test_canary_abort.py; under act: tests/e2e/test_canary_template.py."""
from __future__ import annotations

import os
import signal

from llmops.canary import report, state
from llmops.canary.routers.replicas import ORIGINAL
from llmops.canary.runner import CanaryRun
from tests.unit.canary_fakes import FakeProm, counts
from tests.unit.test_canary_runner import GOOD, fake_promote, replicas, setup


def aborted(run) -> CanaryRun:
    """A fresh run (a new workflow job) in mode abort on the same Deployments, with no Prometheus."""
    from dataclasses import replace

    return CanaryRun(replace(run.cfg, mode="abort"), run.kube, None, sleep=lambda s: None, log=lambda t: None)


def test_abort_mid_walk_returns_all_traffic_and_is_idempotent():
    walk, kube, _ = setup(GOOD, mode="step")
    assert walk.execute() == "continue" and replicas(kube) == (9, 1)  # left at 10 % for the next step
    walk2 = CanaryRun(walk.cfg, kube, FakeProm(GOOD), sleep=lambda s: None, log=lambda t: None)
    assert walk2.execute() == "continue" and replicas(kube) == (5, 5)  # mid-walk at 50 %

    run = aborted(walk)
    assert run.abort() == "rollback"
    assert replicas(kube) == (10, 0) and run.final_weight == 0
    assert ORIGINAL not in kube.deployments["llm-stable"]["metadata"]["annotations"]  # routing finalized
    assert run.actions[0] == "canary weight set to 0"  # traffic first, as a failed canary's rollback
    assert "aborted by hand (was progressing after 2 window(s), canary weight was 50%)" in run.decision.reason
    saved = state.load(kube, "prod", "llm-canary")
    assert saved.phase == "rolled_back" and saved.windows == 2  # the record of the walk is kept
    record = report.build(run)
    out = report.outputs(record, "r.json")
    assert (out["result"], out["decision"], out["phase"], out["weight"]) == ("rollback", "rollback",
                                                                             "rolled_back", 0)
    assert "all traffic is on stable" in report.summary(record).render()

    again = aborted(walk)
    assert again.abort() == "rollback" and replicas(kube) == (10, 0)
    assert "was rolled_back after 2 window(s), canary weight was 0%" in again.decision.reason
    # A later walk of the same version does not silently resume after an abort.
    rerun = CanaryRun(walk.cfg, kube, FakeProm(GOOD), sleep=lambda s: None, log=lambda t: None)
    assert rerun.execute() == "rollback" and "already rolled back" in rerun.decision.reason
    assert replicas(kube) == (10, 0)


def test_abort_of_a_canary_never_started_scales_it_down():
    walk, kube, _ = setup(GOOD)  # nothing executed
    kube.scale_deployment("prod", "llm-canary", 2)  # deployed, taking a share of a shared Service, no walk yet
    run = aborted(walk)
    assert run.abort() == "rollback" and replicas(kube) == (10, 0)
    assert "was never started" in run.decision.reason and state.load(kube, "prod", "llm-canary").phase == "rolled_back"
    assert run.progress.canary_version == "v2" and run.progress.stable_version == "v1"


def test_abort_of_a_paused_canary_and_of_a_promoted_one():
    walk, kube, _ = setup(counts(3, 0, 30, 0), inconclusive_limit=1)
    assert walk.execute() == "continue" and walk.decision.paused and replicas(kube) == (9, 1)
    run = aborted(walk)
    assert run.abort() == "rollback" and replicas(kube) == (10, 0)
    assert "was paused after 2 window(s), canary weight was 10%" in run.decision.reason

    walk, kube, _ = setup(GOOD)
    walk.promoter = fake_promote
    assert walk.execute() == "promote"
    run = aborted(walk)
    assert run.abort() == "promote" and "nothing to abort" in run.decision.reason
    assert state.load(kube, "prod", "llm-canary").phase == "promoted" and replicas(kube) == (10, 0)


def test_signals_during_the_abort_are_held_until_traffic_is_safe():
    walk, kube, _ = setup(GOOD, mode="step")
    walk.execute()
    sent = []

    def burst(name, body):  # GitHub's cancel in the middle of the abort: SIGINT, then SIGTERM
        if not sent and name == "llm-stable":
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
    kube.on_patch = burst
    run = aborted(walk)
    assert run.abort() == "rollback"
    assert sent and replicas(kube) == (10, 0) and state.load(kube, "prod", "llm-canary").phase == "rolled_back"
    assert "2 signal(s) held until traffic was safe" in run.actions
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
