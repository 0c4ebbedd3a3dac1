"""The post-rollout health check insists on the new model version: old pods still answering 200 are not health."""
from __future__ import annotations

import json
import threading

import pytest

from llmops.k8s.health import HealthFailed, HealthSpec, wait_healthy


@pytest.fixture
def server(get_server):
    state = {"version": "v1"}
    url = get_server(lambda _path: (200, json.dumps({"status": "ok", "model_version": state["version"]}).encode()),
                     headers={"Content-Type": "application/json"})
    return url + "/health", state


def test_old_version_answering_is_not_healthy(server):
    url, state = server
    with pytest.raises(HealthFailed, match="reports model_version 'v1', expected 'v2'"):
        wait_healthy(HealthSpec(url, expect_version="v2", budget=0.3, interval=0.1))


def test_healthy_once_the_new_version_serves(server):
    url, state = server
    timer = threading.Timer(0.3, lambda: state.update(version="v2"))
    timer.start()
    report = wait_healthy(HealthSpec(url, expect_version="v2", budget=10, interval=0.1))
    timer.join()
    assert report.ok and report.attempts > 1


def test_no_expectation_accepts_any_version(server):
    url, _ = server
    assert wait_healthy(HealthSpec(url, budget=1, interval=0.1)).attempts == 1
