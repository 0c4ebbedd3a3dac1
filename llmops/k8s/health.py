"""Verifying a model server over HTTP: ``GET /health``, the version proof, a smoke ``POST /v1/completions``, retried
within a budget.

``probe`` makes one check and returns what is wrong (or None) and how the version was proven; ``wait_healthy``
repeats it every ``interval`` seconds until ``successes`` probes in a row pass or the ``budget`` is spent, and raises
``HealthFailed`` with the last problem and the number of tries. Every request has a timeout. Nothing is swallowed:
each failure is named (status code and body excerpt, connection error, bad JSON, missing ``choices``).

Version proof (``expect_version``), first that applies: our model server's ``/health`` body reports
``model_version``; else (vLLM and TGI answer an empty 200) ``GET /v1/models`` must list the version as a model id
(vLLM's ``--served-model-name``); else the server names no version and the report says so. The smoke completion
sends ``model`` (the ``model`` field, else the id /v1/models proved), which OpenAI-style servers require.
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

    def _origin(self, path: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    @property
    def completions_url(self) -> str:
        return self._origin("/v1/completions")

    @property
    def models_url(self) -> str:
        return self._origin("/v1/models")


@dataclass
class HealthReport:
    ok: bool
    attempts: int
    elapsed: float
    problem: str = ""
    reached: bool = False
    proof: str = ""


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


def _model_ids(resp: Any) -> list[str] | None:
    """The ids an OpenAI-style ``/v1/models`` lists, or None when the answer is not that."""
    if resp.status_code != 200:
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id") is not None]


@dataclass
class Probe:
    problem: str | None
    answered: bool
    proof: str = ""


def probe(session: Any, spec: HealthSpec) -> Probe:
    """One health check: /health, the version proof, the smoke completion."""
    import requests

    try:
        resp = session.get(spec.url, timeout=spec.request_timeout)
    except requests.RequestException as exc:
        return Probe(f"GET {spec.url}: {type(exc).__name__}: {str(exc)[:200]}", False)
    if not 200 <= resp.status_code < 300:
        return Probe(f"GET {spec.url} answered {resp.status_code}: {_excerpt(resp)}", True)
    proof, model = f"GET {spec.url} answered {resp.status_code}", spec.model
    if spec.expect_version:
        serving = _served_version(resp)
        if serving is not None and serving != spec.expect_version:
            return Probe(f"GET {spec.url} reports model_version {serving!r}, expected {spec.expect_version!r} "
                         "(the new version is not serving yet, or the URL reaches old pods)", True)
        if serving is not None:
            proof = f"{spec.url} reports model_version {serving}"
        else:
            try:
                ids = _model_ids(session.get(spec.models_url, timeout=spec.request_timeout))
            except requests.RequestException:
                ids = None
            if ids is not None and spec.expect_version not in ids:
                return Probe(f"GET {spec.models_url} lists {', '.join(ids) or 'no models'}, not "
                             f"{spec.expect_version!r} (the new version is not serving yet, or the URL reaches old "
                             "pods; vLLM: --served-model-name must be the version)", True)
            if ids is not None:
                proof, model = f"{spec.models_url} lists {spec.expect_version}", model or spec.expect_version
            else:
                proof = (f"version not proven: {spec.url} reports no model_version and {spec.models_url} lists no "
                         "models")
    if not spec.smoke:
        return Probe(None, True, proof)
    body: dict[str, Any] = {"prompt": spec.prompt, "max_tokens": spec.max_tokens, "temperature": 0}
    if model:
        body["model"] = model
    try:
        resp = session.post(spec.completions_url, json=body, timeout=spec.request_timeout)
    except requests.RequestException as exc:
        return Probe(f"POST {spec.completions_url}: {type(exc).__name__}: {str(exc)[:200]}", True)
    problem = completion_problem(resp)
    return Probe(problem, True, proof + f"; smoke completion{' (model ' + model + ')' if model else ''} answered")


def check_once(session: Any, spec: HealthSpec) -> tuple[str | None, bool]:
    """(problem or None, whether the server answered at all)."""
    found = probe(session, spec)
    return found.problem, found.answered


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
            found = probe(session, spec)
            problem_now, answered = found.problem, found.answered
            reached = reached or answered
            if problem_now is None:
                streak += 1
                if streak >= spec.successes:
                    return HealthReport(True, attempts, clock() - start, reached=True, proof=found.proof)
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
