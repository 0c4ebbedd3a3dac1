"""A real Prometheus server (Debian's ``prometheus`` binary) for the tests and the local sandbox.

Owns: writing a scrape config (global scrape_interval and evaluation_interval
1s, given static targets, optional rule files), starting ``prometheus`` on a
free 127.0.0.1 port with TSDB storage in a temp dir, readiness via
``/-/ready``, stopping it (its own process group only), and query helpers
over the HTTP API (stdlib only, no client library needed).

Timing: Debian's Prometheus 2.42 is ready in ~0.5 s, but its scrape manager
applies target sets on a 5 s tick, so the first sample shows up ~5-6 s after
start; ``wait_for_value`` (default timeout 20 s) absorbs that.

    with PrometheusServer(["127.0.0.1:8000"]) as prom:
        prom.wait_for_value('my_metric{job="app"}', lambda v: v == 42)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from llmops.sandbox import procs as tools


class PrometheusServer(tools.Started):
    def __init__(
        self,
        targets: Iterable[str] = (),
        rule_files: Iterable[str | Path] = (),
        job: str = "test",
        enable_lifecycle: bool = False,
        extra_scrape_configs: list[dict[str, Any]] | None = None,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 30.0,
    ):
        bins = tools.prometheus_bins_or_none()
        if bins is None:
            raise tools.InfraError(f"prometheus/promtool not found; run: {tools.PROMETHEUS_CMD}")
        self.prometheus, self.promtool = bins
        self.targets = list(targets)
        self.rule_files = [str(Path(r).resolve()) for r in rule_files]
        self.job = job
        self.enable_lifecycle = enable_lifecycle
        self.extra_scrape_configs = extra_scrape_configs or []
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="llmops-prom-"))
        self.config_path = self.dir / "prometheus.yml"
        self.port = 0
        self.url = ""
        self.proc: tools.ManagedProcess | None = None

    def config(self) -> dict[str, Any]:
        scrape = [{"job_name": self.job, "static_configs": [{"targets": self.targets}]}] if self.targets else []
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": scrape + self.extra_scrape_configs,
        }

    def start(self) -> None:
        self.config_path.write_text(json.dumps(self.config(), indent=2))  # JSON is valid YAML
        check = subprocess.run([self.promtool, "check", "config", str(self.config_path)],
                               capture_output=True, text=True, timeout=60, check=False)
        if check.returncode != 0:
            raise tools.InfraError(f"promtool check config failed:\n{check.stdout}{check.stderr}")
        self.port = tools.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            self.prometheus,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        if self.enable_lifecycle:
            argv.append("--web.enable-lifecycle")
        argv += self.extra_args
        self.proc = tools.ManagedProcess("prometheus", argv, self.dir / "prometheus.log")

        def ready() -> bool:
            assert self.proc is not None
            self.proc.check_alive()
            return tools.http_ok(f"{self.url}/-/ready", lambda status, _b: status == 200)
        try:
            tools.wait_until(ready, self.startup_timeout, 0.2, f"prometheus ready at {self.url}")
        except TimeoutError as exc:
            raise tools.InfraError(f"{exc}\n{tools.tail(self.proc.log_path)}") from None

    def stop(self) -> None:
        try:
            if self.proc is not None:
                self.proc.stop()
                self.proc = None
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ HTTP API
    def api(self, path: str, params: dict[str, str] | None = None, method: str = "GET") -> Any:
        url = f"{self.url}{path}"
        data = None
        if params:
            encoded = urllib.parse.urlencode(params)
            if method == "GET":
                url += "?" + encoded
            else:
                data = encoded.encode()
        req = urllib.request.Request(url, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            exc.close()
            raise tools.InfraError(f"{method} {path} -> {exc.code}: {body[:500]!r}") from None
        if not body:
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            return body.decode(errors="replace")
        if isinstance(payload, dict) and payload.get("status") == "error":
            raise tools.InfraError(f"{path}: {payload.get('errorType')}: {payload.get('error')}")
        return payload.get("data") if isinstance(payload, dict) and "data" in payload else payload

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns the ``result`` list (vector: [{'metric':..., 'value': [ts, '1']}])."""
        data = self.api("/api/v1/query", {"query": promql})
        result = data["result"]
        if data.get("resultType") == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_value(self, promql: str) -> float | None:
        """The single sample value of ``promql`` or None when it returns nothing."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise tools.InfraError(f"{promql!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for_value(
        self,
        promql: str,
        predicate: Callable[[float], bool] = lambda v: True,
        timeout: float = 20.0,
    ) -> float:
        """Poll ``promql`` until it returns one sample satisfying ``predicate``; return it."""
        last: list[float | None] = [None]

        def probe() -> bool:
            last[0] = self.query_value(promql)
            return last[0] is not None and predicate(last[0])
        try:
            tools.wait_until(probe, timeout, 0.25, f"{promql!r} to satisfy predicate")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last value {last[0]!r}; targets: {self.targets_health()}") from None
        assert last[0] is not None
        return last[0]

    def targets_health(self) -> list[tuple[str, str, str]]:
        try:
            data = self.api("/api/v1/targets")
        except Exception as exc:  # noqa: BLE001 - diagnostic only
            return [("?", "?", repr(exc))]
        return [(t.get("scrapeUrl", ""), t.get("health", ""), t.get("lastError", ""))
                for t in data.get("activeTargets", [])]

    def reload(self) -> None:
        """POST /-/reload (needs enable_lifecycle=True) after rewriting the config."""
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        self.api("/-/reload", method="POST")

    def check_rules(self, path: str | Path) -> None:
        """Validate a rule file with ``promtool check rules``; raises InfraError with its output."""
        res = subprocess.run([self.promtool, "check", "rules", str(path)],
                             capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise tools.InfraError(f"promtool check rules {path}:\n{res.stdout}{res.stderr}")

    def wait_for_scrapes_after(self, t: float, scrapes: int = 2, timeout: float = 30.0) -> float:
        """Wait until every target's last scrape started >= ``t`` + (scrapes - 1) s (wall clock): with the 1 s
        interval about ``scrapes`` scrapes since ``t``, and at least one whole scrape after it. A condition, where
        a fixed sleep fails on a loaded machine whose scrapes run late."""
        return self.wait_for_value("min(timestamp(up))", lambda v: v >= t + scrapes - 1, timeout)

    def wait_until_targets_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.targets_health()
            if health and all(h == "up" for _, h, _ in health):
                return
            time.sleep(0.25)
        raise TimeoutError(f"targets not up after {timeout}s: {self.targets_health()}")
