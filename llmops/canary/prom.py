"""Prometheus as the canary's metrics provider (prometheus-api-client's PrometheusConnect, with timeouts).

Owns: ``Prometheus.query_value`` (one PromQL instant query -> one float, or ``None`` for no value: an empty
result or NaN, after flagger's NoValues), ``check_online`` (exit 3 before any traffic moves when Prometheus is
down), and the mapping of failures: connection errors and 5xx are ``InfraError`` (exit 3), a 400 (bad PromQL, e.g.
a broken custom template) is ``UsageError`` (exit 2).
"""
from __future__ import annotations

import math
from typing import Any

from llmops.errors import InfraError, UsageError


class Prometheus:
    def __init__(self, url: str, *, timeout: float = 10.0, token: str | None = None, verify_tls: bool = True,
                 retries: int = 2):
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        from llmops.redact import split_url

        url, auth = split_url(url)  # user:password@ never reaches a message or a record; it goes as basic auth
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"prometheus-url must start with http:// or https://, got {url!r}",
                             "pass e.g. http://prometheus.monitoring:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else None
        auth = None if token else auth
        retry = Retry(total=retries, backoff_factor=0.3, status_forcelist=(502, 503, 504),
                      allowed_methods=("GET",), raise_on_status=False)
        self.client = PrometheusConnect(url=self.url, headers=headers, disable_ssl=not verify_tls, retry=retry,
                                        timeout=timeout, auth=auth)
        self.queries = 0

    def check_online(self) -> None:
        import requests

        try:
            ok = self.client.check_prometheus_connection()
        except requests.RequestException as exc:
            raise InfraError(f"Prometheus at {self.url} is unreachable: {type(exc).__name__}",
                             "check prometheus-url and that the runner can reach it") from None
        if not ok:
            raise InfraError(f"Prometheus at {self.url} did not answer OK",
                             "check prometheus-url (and the token, if it needs one)")

    def _query(self, promql: str, at: float | None) -> Any:
        """One instant query; unreachable / failing Prometheus -> InfraError, a rejected query -> UsageError."""
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        params = {"time": f"{at:.3f}"} if at is not None else None
        self.queries += 1
        try:
            return self.client.custom_query(promql, params=params)
        except requests.RequestException as exc:
            raise InfraError(f"Prometheus at {self.url} is unreachable: {type(exc).__name__}",
                             "check prometheus-url and that the runner can reach it") from None
        except PrometheusApiClientException as exc:
            text = str(exc)
            if "HTTP Status Code 400" in text or "HTTP Status Code 422" in text:
                raise UsageError(f"Prometheus rejected the query {promql!r}: {text[:300]}",
                                 "fix the PromQL template in the queries file") from None
            raise InfraError(f"Prometheus query failed: {text[:300]}", "Prometheus is failing; retry later") from None

    def query_value(self, promql: str, at: float | None = None) -> float | None:
        """One instant query that must return at most one sample. ``None`` = no value (empty or NaN)."""
        result: Any = self._query(promql, at)
        if not result:
            return None
        if len(result) > 1:
            raise UsageError(f"query returned {len(result)} series, expected one: {promql!r}",
                             "aggregate the template with sum(...) or avg(...) so it yields one number")
        try:
            value = float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise UsageError(f"query did not return an instant vector: {promql!r}",
                             "a canary template must return one number (an instant vector)") from None
        return None if math.isnan(value) else value  # +Inf is a value (e.g. latency beyond the top bucket)

    def query_buckets(self, promql: str, at: float | None = None) -> dict[str, float] | None:
        """An instant query answering one series per histogram bucket: ``{le: value}``; ``None`` = no series.
        NaN buckets are dropped; a series without an ``le`` label is a template error."""
        result: Any = self._query(promql, at)
        out: dict[str, float] = {}
        for series in result or []:
            le = (series.get("metric") or {}).get("le")
            if le is None:
                raise UsageError(f"histogram query returned a series without an 'le' label: {promql!r}",
                                 "aggregate it with sum by (le) (increase(<name>_bucket{...}[{window}]))")
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                raise UsageError(f"query did not return an instant vector: {promql!r}") from None
            if not math.isnan(value):
                out[le] = value
        return out or None
