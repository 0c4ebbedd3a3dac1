"""Metric presets as a user configures them: rendering per side, selector checks, refusals with a fix."""
from __future__ import annotations

import re

import pytest

from llmops.canary import presets, queries
from llmops.errors import UsageError


def _render(template: str, deployment: str, version: str = "v2") -> str:
    return queries.render(template, version=version, window="30s", namespace="prod",
                          deployment=presets.regex_escape(deployment))


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_renders_distinct_queries_for_the_two_sides(name):
    tpl = presets.templates(name, extras=True)
    canary = {k: _render(t, "llm-canary") for k, t in tpl.items()}
    stable = {k: _render(t, "llm-stable", "v1") for k, t in tpl.items()}
    presets.check_distinct(canary, stable)
    for promql in canary.values():
        assert "{deployment}" not in promql and "@SEL@" not in promql
        assert promql.count("(") == promql.count(")")
    assert set(presets.PRESETS[name].templates) <= set(queries.DEFAULTS)  # names the canary judge knows
    queries.check_sides({k: t for k, t in tpl.items() if k in queries.DEFAULTS})  # the judge's own refusal
    for hist in queries.HISTOGRAMS:
        if hist in tpl:
            assert tpl[hist].lstrip("(").startswith("sum by (le) (") and "_bucket{" in tpl[hist]


def test_identical_renderings_are_refused_with_a_fix():
    tpl = presets.templates("llmops", "version")
    same = {k: _render(t, "a", "v1") for k, t in tpl.items()}
    with pytest.raises(UsageError) as err:
        presets.check_distinct(same, dict(same))
    assert "identical" in err.value.message and "canary-selector" in err.value.hint
    assert err.value.exit_code == 2


def test_pod_pattern_is_anchored_and_escaped():
    sel = presets.pod_selector("my.app", namespace="prod")
    promql = queries.render(presets.side_templates("tgi", sel)["requests"], version="v", window="5s", namespace="",
                            deployment="x")
    pattern = re.search(r'pod=~"([^"]+)"', promql).group(1).replace("\\\\", "\\")
    assert re.fullmatch(pattern, "my.app-7d9f8c6b5d-x2x4q")
    for other in ("myXapp-7d9f8c6b5d-x2x4q", "my.app-canary-7d9f8c6b5d-x2x4q", "my.app-db-0", "my.app-x2x4q"):
        assert not re.fullmatch(pattern, other), other
    pinned = presets.pod_selector("llm", "5d8f9c7b4")
    assert "llm-5d8f9c7b4-" in pinned
    with pytest.raises(UsageError):
        presets.pod_selector("llm", "Not-A-Hash")


def test_explicit_selectors_are_checked_and_keep_their_braces():
    tpl = presets.side_templates("vllm", '{pod=~"llm-canary-[a-z0-9]{5}", container="vllm"}')
    promql = queries.render(tpl["requests"], version="v", window="5s", namespace="", deployment="d")
    assert 'pod=~"llm-canary-[a-z0-9]{5}", container="vllm", handler=~' in promql
    for bad in ("pod=llm", 'pod="a" container="b"', "", 'pod="unterminated'):
        with pytest.raises(UsageError) as err:
            presets.check_selector(bad)
        assert err.value.hint


def test_unknown_preset_unsupported_selection_and_checks_say_what_to_do():
    with pytest.raises(UsageError) as err:
        presets.get("ollama")
    assert "vllm" in err.value.hint
    with pytest.raises(UsageError) as err:
        presets.templates("tgi", "version")
    assert "canary-selector" in err.value.hint
    with pytest.raises(UsageError) as err:
        presets.check_checks("tgi", ["error_rate", "ttft_p95"])
    assert "ttft_p95" in err.value.message and "queries file" in err.value.hint
    assert set(presets.CHECK_TEMPLATE) == set(__import__("llmops.canary.judge", fromlist=["CHECKS"]).CHECKS)
    presets.check_checks("vllm", ["latency_p99", "ttft_p95"])


def test_router_presets_select_the_proxy_view():
    istio = _render(presets.templates("istio")["errors"], "llm-canary")
    assert 'reporter="destination"' in istio and 'destination_workload=~"llm-canary"' in istio
    nginx = presets.templates("nginx")["requests"]
    canary, stable = _render(nginx, "llm-canary"), _render(nginx, "llm-stable")
    assert 'canary=~"prod-llm-canary-[0-9]+"' in canary and 'canary="", service=~"llm-stable"' in stable


def test_bucket_bounds_match_the_exporters_transcription_of_each_servers_source():
    from tests.infra import exporters as ex

    source = {"vllm:e2e_request_latency_seconds": ex.VLLM_E2E, "vllm:time_to_first_token_seconds": ex.VLLM_TTFT,
              "tgi_request_duration": ex.TGI_DURATION, "sglang:e2e_request_latency_seconds": ex.SGLANG_E2E,
              "sglang:time_to_first_token_seconds": ex.SGLANG_TTFT,
              "nv_inference_first_response_histogram_ms": ex.TRITON_FIRST_RESPONSE_MS,
              "istio_request_duration_milliseconds": ex.ENVOY_MS,
              "nginx_ingress_controller_request_duration_seconds": ex.GO_DEF_BUCKETS}
    for preset in presets.PRESETS.values():
        for metric, bounds in preset.buckets.items():
            if metric in source:
                assert tuple(bounds) == tuple(source[metric]), metric
            assert f"{metric}_bucket" in " ".join(preset.templates.values()), (preset.name, metric)


def test_millisecond_buckets_are_rewritten_to_seconds_for_the_judge():
    promql = _render(presets.templates("istio")["latency_seconds"], "llm-canary")
    assert promql.count("label_replace(") == len(presets.ENVOY_MS)
    assert '"le", "2.5", "le", "(2500)(\\\\.0+)?"' in promql and '"le", "3600", "le", "(3\\\\.6e\\\\+06|3600000)' in promql


def test_metrics_preset_script_writes_a_queries_file_canary_step_accepts(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = root / "bin" / "metrics_preset.py"
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(script), "tgi"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "queries.yaml"
    path.write_text(proc.stdout)
    loaded = queries.load(str(path))
    assert loaded["requests"] == presets.templates("tgi")["requests"]
    assert "# cannot measure ttft_p95" in proc.stdout
    bad = subprocess.run([sys.executable, str(script), "tgi", "--selection", "version"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "no version label" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr


def test_each_stack_page_names_the_metrics_its_preset_queries_and_links_resolve():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pages = root / "docs" / "stacks"
    for name, preset in presets.PRESETS.items():
        if name == "llmops":
            continue
        text = (pages / f"{name}.md").read_text()
        metrics = set(re.findall(r"([a-z_:]+?)(?:_bucket)?\{", " ".join(preset.templates.values())))
        missing = {m for m in metrics if m.removesuffix("_bucket") not in text}
        assert not missing, (name, missing)
    readme = (root / "README.md").read_text()
    for page in sorted(pages.glob("*.md")):
        assert f"docs/stacks/{page.name}" in readme, page.name
        for link in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if not link.startswith("http"):
                assert (page.parent / link).resolve().exists(), (page.name, link)


def test_for_sides_gives_one_shared_set_or_one_set_per_explicit_side():
    canary, stable = presets.for_sides("vllm")
    assert canary is stable and canary == presets.templates("vllm")
    canary, stable = presets.for_sides("tgi", canary_selector='pod=~"a-.*"', stable_selector='pod=~"b-.*"')
    assert 'pod=~"a-.*"' in canary["requests"] and 'pod=~"b-.*"' in stable["requests"]
    presets.check_distinct(canary, stable)
    with pytest.raises(UsageError):
        presets.for_sides("tgi", canary_selector='pod="a"')
    same_c, same_s = presets.for_sides("tgi", canary_selector='pod="a"', stable_selector='pod="a"')
    with pytest.raises(UsageError):
        presets.check_distinct(same_c, same_s)
