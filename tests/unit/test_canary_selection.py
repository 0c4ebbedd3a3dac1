"""canary-step's metrics-preset / canary-selector / stable-selector / queries inputs resolved into each side's
templates, as a user configures them: refusals say what to fix, before anything touches a cluster."""
from __future__ import annotations

import pytest

from llmops.canary import analysis, queries, selection
from llmops.canary.judge import AnalysisConfig, Limits
from llmops.errors import InputError, UsageError

NEEDED = ["requests", "errors", "latency_seconds"]


def _render(sel: selection.Selection, role: str, name: str, deployment: str, version: str = "v") -> str:
    cfg = sel.analysis(AnalysisConfig())
    templates = cfg.stable_templates if role == "stable" and cfg.stable_templates else cfg.templates
    dep = analysis.regex_escape(deployment) if cfg.regex_deployment else deployment
    return queries.render(templates[name], version=version, window="5m", namespace="prod", deployment=dep)


def test_the_default_is_todays_built_in_templates():
    from llmops.canary import presets

    assert presets.templates("llmops") == queries.DEFAULTS  # the preset documents exactly what runs by default
    sel = selection.resolve("llmops", needed=NEEDED)
    assert sel.mode == "version" and sel.canary == queries.DEFAULTS and sel.stable == queries.DEFAULTS
    cfg = sel.analysis(AnalysisConfig())
    assert cfg.templates == queries.DEFAULTS and cfg.stable_templates == {} and not cfg.regex_deployment
    assert sel.uses_version(NEEDED)


def test_model_servers_are_selected_by_each_deployments_pods_without_versions():
    sel = selection.resolve("vllm", needed=NEEDED)
    assert sel.mode == "pods" and not sel.uses_version(NEEDED)
    canary = _render(sel, "canary", "errors", "llm.canary")
    assert 'pod=~"llm\\\\.canary-[' in canary and 'status="5xx"' in canary  # regex-escaped, then string-escaped
    assert _render(sel, "stable", "errors", "llm") != canary
    assert _render(sel, "canary", "latency_seconds", "c").startswith("sum by (le) (increase(vllm:e2e")


def test_routers_use_their_own_labels():
    sel = selection.resolve("istio", needed=NEEDED)
    assert sel.mode == "router"
    assert 'destination_workload=~"llm-canary"' in _render(sel, "canary", "requests", "llm-canary")


def test_explicit_selectors_give_one_template_set_per_side_and_identical_ones_are_refused():
    sel = selection.resolve("tgi", canary_selector='pod=~"a-.*"', stable_selector='pod=~"b-.*"', needed=NEEDED)
    assert sel.mode == "explicit" and sel.selectors == {"canary": 'pod=~"a-.*"', "stable": 'pod=~"b-.*"'}
    assert 'pod=~"a-.*"' in _render(sel, "canary", "requests", "x")
    assert 'pod=~"b-.*"' in _render(sel, "stable", "requests", "x")
    with pytest.raises(UsageError) as err:
        selection.resolve("tgi", canary_selector='pod="a"', stable_selector='pod="a"', needed=NEEDED)
    assert "identical" in err.value.message and err.value.exit_code == 2
    with pytest.raises(UsageError):
        selection.resolve("tgi", canary_selector='pod="a"', needed=NEEDED)  # both or neither


def test_a_check_the_server_cannot_measure_is_refused_unless_a_queries_file_supplies_it(tmp_path):
    flags = {"latency_seconds": "max-latency-p99 and max-latency-increase"}
    with pytest.raises(UsageError) as err:
        selection.resolve("triton", needed=NEEDED, flags=flags)
    assert "cannot measure latency_seconds (for latency_p99)" in err.value.message
    assert "max-latency-p99 and max-latency-increase to off" in err.value.hint
    own = tmp_path / "q.yaml"
    own.write_text('latency_seconds: \'sum by (le) (increase(my_latency_bucket{{pod=~"{deployment}-.*"}}[{window}]))\'\n')
    sel = selection.resolve("triton", needed=NEEDED, queries_path=str(own))
    assert sel.overrides == {"latency_seconds": sel.canary["latency_seconds"]}
    assert "my_latency_bucket" in sel.stable["latency_seconds"]
    old = tmp_path / "old.yaml"
    old.write_text("latency_p99: 'histogram_quantile(0.99, x)'\n")
    with pytest.raises(InputError) as err:
        selection.resolve("vllm", needed=NEEDED, queries_path=str(old))
    assert "latency_seconds" in err.value.message
    with pytest.raises(UsageError) as err:
        selection.resolve("ollama", needed=NEEDED)
    assert "vllm" in err.value.hint


def test_live_renderings_that_coincide_are_refused_before_querying():
    """Two Deployments whose names differ only where the template does not look (here: no {deployment})."""
    sel = selection.resolve("llmops", needed=NEEDED)
    cfg = sel.analysis(AnalysisConfig(limits={"error_rate": Limits(0.05, None)}))
    with pytest.raises(UsageError, match="same PromQL for canary and stable"):
        analysis.analyse(None, cfg, analysis.Side("v1", "a"), analysis.Side("v1", "b"), "prod", 60, weight=5,
                         evidence={}, min_requests=1)


@pytest.mark.parametrize("status, rolling", [
    ({"replicas": 2, "updatedReplicas": 2, "observedGeneration": 3}, False),
    ({"replicas": 3, "updatedReplicas": 1, "observedGeneration": 3}, True),
    ({"replicas": 2, "updatedReplicas": 2, "observedGeneration": 2}, True),  # the controller has not seen gen 3
])
def test_a_deployment_is_mid_rollout_while_older_pods_may_serve(status, rolling):
    assert selection.rolling({"metadata": {"generation": 3}, "status": status}) is rolling
