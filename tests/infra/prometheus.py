"""A real Prometheus for tests: ``llmops.sandbox.prometheus.PrometheusServer`` (shared with
``run_pipeline.py --cluster sandbox``); a missing binary skips (or, under CI, fails) the test."""
from __future__ import annotations

from typing import Any

from llmops.sandbox import prometheus as _prometheus
from tests.infra import tools


class PrometheusServer(_prometheus.PrometheusServer):
    __doc__ = _prometheus.__doc__

    def __init__(self, *args: Any, **kwargs: Any):
        tools.prometheus_bins()
        super().__init__(*args, **kwargs)
