"""Verifying a model server over HTTP: ``GET /health`` and a smoke ``POST /v1/completions``, retried within a budget.

``check_once`` makes one probe and returns what is wrong (or None); ``wait_healthy`` repeats it every ``interval``
seconds until ``successes`` probes in a row pass or the ``budget`` is spent, and raises ``HealthFailed`` with the last
problem and the number of tries. Every request has a timeout. Nothing is swallowed: each failure is named (status
code and body excerpt, connection error, bad JSON, missing ``choices``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llmops.errors import CheckFailed, UsageError


class HealthFailed(CheckFailed):
    def __init__(self, message: str, hint: str | None = None, *, reached: bool = True):
        super().__init__(message, hint)
        self.reached = reached  # False: nothing ever answered (unreachable), True: it answered but wrongly


@dataclass
class HealthSpec:
    url: str
    smoke: bool = False
    prompt: str = "Say hello."
    model: str | None = None
    max_tokens: int = 8
    budget: float = 120.0
    interval: float = 2.0
    request_timeout: float = 10.0
    successes: int = 1
    expect_version: str | None = None  # /health must report this model_version (old pods may still answer)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"health URL must be an http(s) URL, got {self.url!r}",
                             "give a full URL such as http://llm-server.staging.svc:8000/health")

    @property
    def completions_url(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/v1/completions", "", ""))


@dataclass
class HealthReport:
    ok: bool
    attempts: int
    elapsed: float
    problem: str = ""
    reached: bool = False


def _excerpt(resp: Any) -> str:
    text = (resp.text or "").strip().replace("\n", " ")
    return text[:200] + ("..." if len(text) > 200 else "")


def completion_problem(resp: Any) -> str | None:
    """What is wrong with a /v1/completions answer, or None."""
    if resp.status_code != 200:
        return f"POST {resp.url} answered {resp.status_code}: {_excerpt(resp)}"
    try:
        body = resp.json()
    except ValueError:
        return f"POST {resp.url} did not answer JSON: {_excerpt(resp)}"
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) \
            or not isinstance(choices[0].get("text"), str):
        return f"POST {resp.url} answered without choices[0].text: {_excerpt(resp)}"
    return None


def _served_version(resp: Any) -> str | None:
    """The model_version a /health body reports (our model server does), or None for servers that do not."""
    try:
        body = resp.json()
    except ValueError:
        return None
    value = body.get("model_version") if isinstance(body, dict) else None
    return str(value) if value not in (None, "") else None


def check_once(session: Any, spec: HealthSpec) -> tuple[str | None, bool]:
    """(problem or None, whether the server answered at all)."""
    import requests

    try:
        resp = session.get(spec.url, timeout=spec.request_timeout)
    except requests.RequestException as exc:
        return f"GET {spec.url}: {type(exc).__name__}: {str(exc)[:200]}", False
    if not 200 <= resp.status_code < 300:
        return f"GET {spec.url} answered {resp.status_code}: {_excerpt(resp)}", True
    if spec.expect_version:
        serving = _served_version(resp)
        if serving is not None and serving != spec.expect_version:
            return (f"GET {spec.url} reports model_version {serving!r}, expected {spec.expect_version!r} "
                    "(the new version is not serving yet, or the URL reaches old pods)"), True
    if not spec.smoke:
        return None, True
    body: dict[str, Any] = {"prompt": spec.prompt, "max_tokens": spec.max_tokens, "temperature": 0}
    if spec.model:
        body["model"] = spec.model
    try:
        resp = session.post(spec.completions_url, json=body, timeout=spec.request_timeout)
    except requests.RequestException as exc:
        return f"POST {spec.completions_url}: {type(exc).__name__}: {str(exc)[:200]}", True
    return completion_problem(resp), True


def wait_healthy(spec: HealthSpec, *, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 session: Any = None) -> HealthReport:
    """Probe until ``spec.successes`` passes in a row; raise HealthFailed when the budget runs out."""
    import requests

    own = session is None
    session = session or requests.Session()
    start = clock()
    attempts, streak, reached, problem = 0, 0, False, ""
    try:
        while True:
            attempts += 1
            problem_now, answered = check_once(session, spec)
            reached = reached or answered
            if problem_now is None:
                streak += 1
                if streak >= spec.successes:
                    return HealthReport(True, attempts, clock() - start, reached=True)
            else:
                streak, problem = 0, problem_now
                if log:
                    log(f"health check {attempts}: {problem_now}")
            left = spec.budget - (clock() - start)
            if left <= 0:
                raise HealthFailed(f"health check failed after {attempts} tries in {clock() - start:.0f}s: {problem}",
                                   "look at the new version's logs; raise health-timeout if it only starts slowly",
                                   reached=reached)
            sleep(min(spec.interval, left))
    finally:
        if own:
            session.close()
