"""Metric presets: the canary's PromQL templates for the servers and routers teams run, as data.

A preset (``PRESETS[name]``) is one server's templates for ``requests``, ``errors`` (counts over the window, for the
exact error-rate tests), ``latency_seconds`` and ``ttft_seconds`` (the histogram's bucket counts over the window,
one series per ``le`` in seconds: the judge counts the requests above a bound, llmops.canary.buckets) and, where
the server has them, ``cost_per_request`` / ``quality``, plus ``extras`` for dashboards (tokens/s, quantiles).
Histograms kept in milliseconds (Istio, Triton) get their ``le`` rewritten to seconds bound by bound, so absolute
limits in seconds mean what they say. Each is written in
the format llmops.canary.queries renders: ``{window}``, ``{namespace}``, ``{deployment}``, ``{version}``
placeholders, ``{{``/``}}`` for literal braces, and the side's label matchers where ``@SEL@`` stands.

Telling canary from stable (``selection``):

=========  ===========================================================================================
pods       default for other servers' presets: an anchored pod-name regex of the side's Deployment,
           ``pod=~"<deployment>-<pod-template-hash>-<5 chars>"`` with the hash and suffix drawn from the
           alphabet Kubernetes uses (bcdfghjklmnpqrstvwxz2456789), so ``llm`` never matches the pods of
           ``llm-canary`` nor a StatefulSet pod ``llm-x-0``. Pass the Deployment through ``regex_escape``
           (``.`` is legal in a Deployment name); give ``pod_template_hash`` (read it with
           ``current_pod_template_hash``) to count only the current ReplicaSet's pods mid-rollout.
version    the series' own version label: ``model_version`` (llmops, where it is the default, as in the
           canary's built-in templates) or ``model_name`` (SGLang, when ``--served-model-name`` is the model
           version). Not vLLM: its HTTP counts (the only place a failed request is counted) carry no
           model label.
explicit   ``canary-selector`` / ``stable-selector``: your own PromQL label matchers per side, e.g.
           ``pod=~"llm-canary-.*", container="vllm"``. Rendered per side (``side_templates``).
=========  ===========================================================================================

Routers measure at the proxy instead: istio selects ``destination_workload`` (= the Deployment, reporter
destination); nginx selects the ``canary`` label (the canary upstream ``<ns>-<service>-<port>``, empty for
stable), assuming each Service is named like its Deployment. Whatever the selection, ``check_distinct`` refuses
templates whose canary and stable renderings are the same PromQL (UsageError, exit 2): they would judge the
canary against itself.

Bucket bounds matter: the judge knows latency only at the bounds (an absolute limit between two is tested at the
next bound up). Each preset's ``buckets`` names the bounds its server uses, so limits can be set on a bound
(vLLM's e2e buckets start at 0.3 s; TGI's are 1.5x apart; Triton's first-response buckets are 100, 500, 2000,
5000 ms). Metric names are checked against the server's source (tests/infra/exporters.py names the versions).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from llmops.errors import UsageError

SEL = "@SEL@"
_ALPHABET = "[bcdfghjklmnpqrstvwxz2456789]"
POD_SELECTOR = f'pod=~"{{deployment}}-{_ALPHABET}{{{{1,10}}}}-{_ALPHABET}{{{{5}}}}", namespace=~"{{namespace}}"'
"""The default pod selection of one side (queries.py format)."""
SELECTIONS = ("pods", "version", "explicit")
TEMPLATES = ("requests", "errors", "latency_seconds", "ttft_seconds", "cost_per_request", "quality")
CHECK_TEMPLATE = {"error_rate": "errors", "latency_p99": "latency_seconds", "ttft_p95": "ttft_seconds",
                  "cost_per_request": "cost_per_request", "quality": "quality"}  # a check -> the template it needs


def _geometric(start: float, factor: float, n: int) -> tuple[float, ...]:
    """TGI's duration buckets: start x factor^k for k = 1..n, multiplied up one step at a time as TGI does."""
    out, value = [], start
    for _ in range(n):
        value *= factor
        out.append(value)
    return tuple(out)


def _hq(q: float, metric: str, scale: str = "") -> str:
    """A quantile (dashboards only: the judge works on bucket counts)."""
    return f"histogram_quantile({q}, sum by (le) (rate({metric}{{{{{SEL}}}}}[{{window}}]))){scale}"


def _le_ms_to_s(expr: str, bounds_ms: tuple[float, ...]) -> str:
    """Rewrite each known millisecond bound of ``expr``'s ``le`` to seconds (ascending, so a rewritten value is
    never matched again: every result is smaller than the bounds still to come). A bound matches as a plain
    decimal or in exponent form, integers with or without a ``.0``."""
    for b in sorted(bounds_ms):
        forms = {f"{b:g}", str(int(b)) if float(b).is_integer() else repr(float(b))}
        pattern = "(" + "|".join(re.escape(f) for f in sorted(forms)) + ")" + (r"(\.0+)?" if float(b).is_integer()
                                                                             else "")
        pattern = pattern.replace("\\", "\\\\")  # inside a PromQL string
        expr = f'label_replace({expr}, "le", "{b / 1000:g}", "le", "{pattern}")'
    return expr


def _buckets(metric: str, bounds_ms: tuple[float, ...] = ()) -> str:
    inner = f"increase({metric}{{{{{SEL}}}}}[{{window}}])"
    return f"sum by (le) ({_le_ms_to_s(inner, bounds_ms) if bounds_ms else inner})"


def _inc(metric: str, extra: str = "") -> str:
    return f"sum(increase({metric}{{{{{SEL}{extra}}}}}[{{window}}]))"


def _rate(metric: str, extra: str = "") -> str:
    return f"sum(rate({metric}{{{{{SEL}{extra}}}}}[{{window}}]))"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    templates: dict[str, str]
    missing: dict[str, str]  # check -> why this server cannot measure it
    buckets: dict[str, tuple[float, ...]]
    version_label: str | None = None  # the label whose value is the model version, if the server has one
    canary_selector: str = POD_SELECTOR  # default per-side selections (queries.py format, {deployment} filled)
    stable_selector: str = POD_SELECTOR
    extras: dict[str, str] = field(default_factory=dict)
    default_selection: str = "pods"
    health_path: str = "/health"
    notes: str = ""


ENVOY_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
            3600000)  # Envoy's default histogram buckets (Istio's request duration), milliseconds
TRITON_MS = (100, 500, 2000, 5000)  # Triton's default first-response buckets, milliseconds
VLLM_HANDLER = 'handler=~"/v1/chat/completions|/v1/completions"'
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "llmops", "llmops reference server (bin/serve.py)",
        {"requests": _inc("llm_requests_total"), "errors": _inc("llm_requests_total", ', status="error"'),
         "latency_seconds": _buckets("llm_request_duration_seconds_bucket"),
         "ttft_seconds": _buckets("llm_time_to_first_token_seconds_bucket"),
         "cost_per_request": f"{_rate('llm_cost_usd_total')} / {_rate('llm_requests_total')}",
         "quality": f"avg(avg_over_time(llm_quality_score{{{{{SEL}}}}}[{{window}}]))"},
        {}, {"llm_request_duration_seconds": (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
             "llm_time_to_first_token_seconds": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)},
        version_label="model_version", default_selection="version",
        extras={"output_tokens_per_second": _rate("llm_output_tokens_total"),
                "cost_per_hour": f"{_rate('llm_cost_usd_total')} * 3600"},
        notes="errors are 5xx answers (status=\"error\"); 4xx (status=\"invalid\") are the client's."),
    Preset(
        "vllm", "vLLM OpenAI-compatible server",
        {"requests": _inc("http_requests_total", f", {VLLM_HANDLER}"),
         "errors": _inc("http_requests_total", f', {VLLM_HANDLER}, status="5xx"'),
         "latency_seconds": _buckets("vllm:e2e_request_latency_seconds_bucket"),
         "ttft_seconds": _buckets("vllm:time_to_first_token_seconds_bucket")},
        {"cost_per_request": "vLLM exports token counts, not cost", "quality": "vLLM has no quality metric"},
        {"vllm:e2e_request_latency_seconds": (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                                              50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
         "vllm:time_to_first_token_seconds": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                              1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)},
        extras={"output_tokens_per_second": _rate("vllm:generation_tokens_total"),
                "prompt_tokens_per_second": _rate("vllm:prompt_tokens_total"),
                "latency_p99": _hq(0.99, "vllm:e2e_request_latency_seconds_bucket"),
                "inter_token_latency_p95": _hq(0.95, "vllm:inter_token_latency_seconds_bucket")},
        notes="requests and errors come from the API server's http_requests_total (prometheus-fastapi-"
              "instrumentator, status grouped as 2xx/4xx/5xx); the engine's vllm:request_success_total counts "
              "only finished requests, so a failed request would be missing from it. http_requests_total has no "
              "model_name label, so vLLM is selected by pod, never by version."),
    Preset(
        "tgi", "Hugging Face text-generation-inference",
        {"requests": _inc("tgi_request_count"),
         "errors": _inc("tgi_request_failure", ', err=~"generation|incomplete.*"'),
         "latency_seconds": _buckets("tgi_request_duration_bucket")},
        {"ttft_p95": "TGI has no time-to-first-token histogram (only queue/validation/inference durations)",
         "cost_per_request": "TGI exports token counts, not cost", "quality": "TGI has no quality metric"},
        {"tgi_request_duration": _geometric(0.0001, 1.5, 35)},
        extras={"output_tokens_per_second": "sum(rate(tgi_request_generated_tokens_sum{{@SEL@}}[{window}]))",
                "queue_p95": _hq(0.95, "tgi_request_queue_duration_bucket")},
        notes="TGI labels nothing with the model: pod selection is the only way. Validation, template and "
              "overloaded (429) failures are the client's or capacity, not counted as errors."),
    Preset(
        "sglang", "SGLang (--enable-metrics)",
        {"requests": f"{_inc('sglang:num_requests_total')} + "
                     f"({_inc('sglang:num_aborted_requests_total')} or vector(0))",
         "errors": _inc("sglang:num_aborted_requests_total"),
         "latency_seconds": _buckets("sglang:e2e_request_latency_seconds_bucket"),
         "ttft_seconds": _buckets("sglang:time_to_first_token_seconds_bucket")},
        {"cost_per_request": "SGLang exports token counts, not cost", "quality": "SGLang has no quality metric"},
        {"sglang:e2e_request_latency_seconds": (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200,
                                                400, 600, 1200, 1800, 2400),
         "sglang:time_to_first_token_seconds": (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100,
                                                200, 400)},
        version_label="model_name",
        extras={"output_tokens_per_second": _rate("sglang:generation_tokens_total")},
        notes="SGLang counts finished requests and aborted ones separately; aborts (errors and client "
              "disconnects) are the error count. TTFT buckets start at 0.1 s."),
    Preset(
        "triton", "NVIDIA Triton Inference Server",
        {"requests": f"{_inc('nv_inference_request_success')} + ({_inc('nv_inference_request_failure')} or vector(0))",
         "errors": _inc("nv_inference_request_failure", ', reason!="CANCELED"'),
         "ttft_seconds": _buckets("nv_inference_first_response_histogram_ms_bucket", TRITON_MS)},
        {"latency_p99": "Triton exports request time only as a cumulative counter (nv_inference_request_"
                        "duration_us): no quantile; see extras latency_mean",
         "cost_per_request": "Triton has no cost metric", "quality": "Triton has no quality metric"},
        {"nv_inference_first_response_histogram_ms": TRITON_MS},
        extras={"latency_mean": f"{_rate('nv_inference_request_duration_us')} / 1e6 / "
                                f"{_rate('nv_inference_request_success')}"},
        health_path="/v2/health/ready",
        notes="ttft needs --metrics-config histogram_latencies=true; its default buckets (100, 500, 2000, "
              "5000 ms, rewritten to seconds) are coarse: set limits on a bound. Labels model/version are Triton's own model "
              "repository version, not yours: pod selection."),
    Preset(
        "istio", "Istio sidecar / gateway metrics",
        {"requests": _inc("istio_requests_total"),
         "errors": _inc("istio_requests_total", ', response_code=~"5.."'),
         "latency_seconds": _buckets("istio_request_duration_milliseconds_bucket", ENVOY_MS)},
        {"ttft_p95": "the proxy sees whole responses, not tokens", "cost_per_request": "no cost at the proxy",
         "quality": "no quality at the proxy"},
        {"istio_request_duration_milliseconds": ENVOY_MS},
        canary_selector='reporter="destination", destination_workload=~"{deployment}", '
                        'destination_workload_namespace=~"{namespace}"',
        stable_selector='reporter="destination", destination_workload=~"{deployment}", '
                        'destination_workload_namespace=~"{namespace}"',
        notes="reporter=\"destination\" counts each request once, at the receiving sidecar."),
    Preset(
        "nginx", "ingress-nginx controller (retired March 2026; prefer Gateway API + model-server metrics)",
        {"requests": _inc("nginx_ingress_controller_requests"),
         "errors": _inc("nginx_ingress_controller_requests", ', status=~"5.."'),
         "latency_seconds": _buckets("nginx_ingress_controller_request_duration_seconds_bucket")},
        {"ttft_p95": "the proxy sees whole responses, not tokens", "cost_per_request": "no cost at the proxy",
         "quality": "no quality at the proxy"},
        {"nginx_ingress_controller_request_duration_seconds": (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                                               5, 10)},
        canary_selector='canary=~"{namespace}-{deployment}-[0-9]+"',
        stable_selector='canary="", service=~"{deployment}", namespace=~"{namespace}"',
        health_path="",
        notes="a canary Ingress's requests carry canary=\"<namespace>-<service>-<port>\" and the main "
              "Ingress's service label; stable ones canary=\"\". The default duration buckets end at 10 s "
              "(--time-buckets changes them). Scrape with honor_labels so the ingress namespace is kept."),
)}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown metrics-preset {name!r}", f"use one of: {', '.join(PRESETS)}") from None


_MATCHER = re.compile(r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*')


def check_selector(selector: str, what: str = "selector") -> str:
    """A user's PromQL label matchers (``a="x", b=~"y.*"``), checked; returned stripped."""
    text = (selector or "").strip().strip(",")
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    parts, pos = [], 0
    while pos < len(text):
        m = _MATCHER.match(text, pos)
        if not m:
            raise UsageError(f"{what} {selector!r} is not a list of PromQL label matchers",
                             'write e.g. pod=~"llm-canary-.*", namespace="prod" (double quotes, comma-separated)')
        parts.append(m.group(0).strip())
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise UsageError(f"{what} {selector!r}: expected a comma at {text[pos:pos + 20]!r}",
                                 "separate label matchers with commas")
            pos += 1
    if not parts:
        raise UsageError(f"{what} is empty", 'give label matchers such as pod=~"llm-canary-.*"')
    return ", ".join(parts)


def regex_escape(value: str) -> str:
    """``value`` as a literal inside a PromQL (RE2) regex: pass Deployment names through this."""
    return re.sub(r"([.\\+*?\[\]^$(){}|])", r"\\\1", value)


def _literal(selector: str) -> str:
    return selector.replace("{", "{{").replace("}", "}}")


def pod_selector(deployment: str, pod_template_hash: str | None = None, namespace: str | None = None) -> str:
    """The resolved pod selection of one Deployment (literal PromQL, queries.py-safe via ``side_templates``)."""
    if pod_template_hash is not None and not re.fullmatch(r"[a-z0-9]{1,10}", pod_template_hash):
        raise UsageError(f"pod-template-hash {pod_template_hash!r} is not a ReplicaSet hash")
    name = regex_escape(deployment).replace("\\", "\\\\")  # a regex escape inside a PromQL string
    middle = pod_template_hash or f"{_ALPHABET}{{1,10}}"
    sel = f'pod=~"{name}-{middle}-{_ALPHABET}{{5}}"'
    return sel + (f', namespace="{namespace}"' if namespace else "")


def _fill(template: str, selector: str) -> str:
    return template.replace(SEL, selector)


def _shared(preset: Preset, template: str) -> str:
    canary, stable = _fill(template, preset.canary_selector), _fill(template, preset.stable_selector)
    # One template for both sides: the side whose selector does not describe it matches no series.
    return canary if canary == stable else f"({canary}) or ({stable})"


def templates(name: str, selection: str | None = None, *, extras: bool = False) -> dict[str, str]:
    """The preset's templates for both sides (one dict, as AnalysisConfig.templates takes it).

    ``selection`` pods: the preset's per-Deployment selection (router presets: their own); version: the
    server's version label (``version_label``) equals ``{version}``; None: the preset's ``default_selection``
    (version for llmops, whose every series carries model_version; pods for the others)."""
    preset = get(name)
    selection = selection or preset.default_selection
    items = dict(preset.templates, **(preset.extras if extras else {}))
    if selection == "pods":
        return {k: _shared(preset, t) for k, t in items.items()}
    if selection == "version":
        if not preset.version_label:
            raise UsageError(f"metrics-preset {name} has no version label to select by",
                             "use the default pod selection or canary-selector / stable-selector")
        sel = f'{preset.version_label}="{{version}}", namespace=~"{{namespace}}"'
        return {k: _fill(t, sel) for k, t in items.items()}
    raise UsageError(f"selection must be one of {', '.join(SELECTIONS[:2])} here, got {selection!r}",
                     "explicit selectors are rendered per side: side_templates()")


def side_templates(name: str, selector: str, *, extras: bool = False) -> dict[str, str]:
    """The preset's templates for ONE side selected by ``selector`` (literal PromQL label matchers)."""
    preset = get(name)
    sel = _literal(check_selector(selector))
    items = dict(preset.templates, **(preset.extras if extras else {}))
    return {k: _fill(t, sel) for k, t in items.items()}


def for_sides(name: str, *, canary_selector: str = "", stable_selector: str = "", selection: str | None = None,
              extras: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """(canary templates, stable templates) for canary-step's ``metrics-preset`` / ``canary-selector`` /
    ``stable-selector`` inputs. Without selectors both are the same shared dict (render each side with its own
    ``deployment=regex_escape(name)``); with them, each side's matchers are baked in."""
    if bool(canary_selector) != bool(stable_selector):
        raise UsageError("canary-selector and stable-selector go together",
                         "give both (each side's PromQL label matchers), or neither for the preset's selection")
    if canary_selector:
        if selection not in (None, "explicit"):
            raise UsageError("explicit selectors replace the preset's selection", "drop one of them")
        return (side_templates(name, canary_selector, extras=extras),
                side_templates(name, stable_selector, extras=extras))
    shared = templates(name, selection, extras=extras)
    return shared, shared


def check_checks(name: str, enabled: list[str] | tuple[str, ...]) -> None:
    """Refuse (exit 2) checks (judge names: error_rate, latency_p99, ttft_p95, ...) the server cannot measure."""
    preset = get(name)
    for check in enabled:
        if check in preset.missing:
            raise UsageError(f"metrics-preset {name} cannot judge {check}: {preset.missing[check]}",
                             f"drop the {check} limit, or give a queries file with your own {check} template")


def check_distinct(canary: dict[str, str], stable: dict[str, str]) -> None:
    """Refuse rendered canary/stable queries that are identical: the canary would be judged against itself."""
    same = sorted(k for k in canary if k in stable and canary[k] == stable[k])
    if same:
        raise UsageError(f"the canary and stable queries are identical for {', '.join(same)}: "
                         f"{canary[same[0]]!r}",
                         "select the sides apart: different Deployments (pod selection), canary-selector / "
                         "stable-selector, or a version label that differs")


def current_pod_template_hash(api_client, namespace: str, deployment: str, timeout: float = 10.0) -> str:
    """The pod-template-hash of ``deployment``'s current ReplicaSet (the one at its revision)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(api_client)
    try:
        dep = apps.read_namespaced_deployment(deployment, namespace, _request_timeout=timeout)
        sets = apps.list_namespaced_replica_set(namespace, _request_timeout=timeout).items
    except ApiException as exc:
        if exc.status == 404:
            raise UsageError(f"Deployment {namespace}/{deployment} not found") from None
        raise
    revision = (dep.metadata.annotations or {}).get("deployment.kubernetes.io/revision")
    for rs in sets:
        owners = [o.uid for o in rs.metadata.owner_references or []]
        ann = rs.metadata.annotations or {}
        if dep.metadata.uid in owners and ann.get("deployment.kubernetes.io/revision") == revision:
            value = (rs.metadata.labels or {}).get("pod-template-hash")
            if value:
                return value
    raise UsageError(f"Deployment {namespace}/{deployment} has no ReplicaSet at revision {revision} yet",
                     "wait for the rollout to start, or use the default pod pattern (no hash)")
