"""OpenAI-compatible HTTP endpoint backend (a staging deployment, vLLM, TGI, our model server, a hosted API).

Prompt rows go to ``/v1/completions``, chat rows to ``/v1/chat/completions``. Requests run concurrently with a
bound, each with a timeout; connection errors, timeouts, 429 and 5xx are retried with exponential backoff
(generation with temperature 0 is idempotent). The first request runs alone so an unreachable endpoint fails in
seconds with exit 3, not after every sample has timed out. The API key comes from an environment variable, never a
flag, and is masked in the logs (and scrubbed from any reply text quoted in an error: a server may echo it).

A hostile or broken server cannot exhaust the runner: a reply body is read in pieces and refused past
``max_response_bytes`` (default 8 MiB, counted after decompression), and ``timeout`` is a total deadline per
attempt, covering connect, headers and the whole body (a server trickling one byte a second is cut off).
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from llmops.errors import InfraError, UsageError
from llmops.eval.backends import Generation, Generations, progress
from llmops.eval.data import Sample

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RESPONSE_BYTES = 8 << 20
CHUNK = 64 << 10


class _Deadline(Exception):
    """The attempt ran past its total deadline."""


_WATCH = threading.local()  # the running attempt's watchdog, seen by the connection that sends it


class _Watchdog:
    """At the deadline, shut the attempt's socket: a blocked read (headers or body) returns at once."""

    def __init__(self, seconds: float):
        self.sock = None
        self.fired = False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        import socket

        self.fired = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> _Watchdog:
        _WATCH.current = self
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()
        _WATCH.current = None


def _watched_adapter():
    """A requests adapter whose connections tell the current watchdog their socket when they await a reply."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched(base):
        class Watched(base):
            def getresponse(self, *args, **kwargs):
                watch = getattr(_WATCH, "current", None)
                if watch is not None:
                    watch.sock = self.sock
                    if watch.fired:
                        watch._fire()
                return super().getresponse(*args, **kwargs)
        return Watched

    class Pool(HTTPConnectionPool):
        ConnectionCls = watched(HTTPConnection)

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = watched(HTTPSConnection)

    adapter = HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}
    return adapter


class _TooBig(Exception):
    """The reply body is larger than allowed."""


class EndpointBackend:
    name = "endpoint"

    def __init__(self, url: str, *, model: str = "", max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, concurrency: int = 8, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5, api_key_env: str = "OPENAI_API_KEY", show_progress: bool = True,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        from llmops.redact import remember, split_url, url_secrets

        for secret in url_secrets((url or "").strip()):
            remember(secret)
        url, self._auth = split_url((url or "").strip().rstrip("/"))  # user:password@ goes as basic auth only
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--endpoint must be an http(s) URL, got {url!r}", "e.g. http://llm.staging.svc:8000")
        if url.endswith("/v1"):
            url = url[:-3]
        if concurrency < 1 or timeout <= 0 or retries < 0:
            raise UsageError("--concurrency must be >= 1, --timeout > 0 and --retries >= 0")
        self.base, self.model, self.max_new_tokens = url, model, max_new_tokens
        self.temperature, self.top_p = temperature, top_p
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        remember(self.api_key)
        self.show_progress = show_progress
        self.max_response_bytes = max_response_bytes
        self._local = threading.local()

    def info(self) -> dict:
        return {"backend": self.name, "endpoint": self.base, "model": self.model or None,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "concurrency": self.concurrency, "timeout_s": self.timeout, "retries": self.retries}

    def _session(self):
        import requests

        if not hasattr(self._local, "session"):
            s = requests.Session()
            s.mount("http://", _watched_adapter())
            s.mount("https://", _watched_adapter())
            if self.api_key:
                s.headers["Authorization"] = f"Bearer {self.api_key}"
            elif self._auth:
                s.auth = self._auth
            self._local.session = s
        return self._local.session

    def _request(self, sample: Sample) -> tuple[str, dict]:
        body: dict = {"max_tokens": self.max_new_tokens, "temperature": self.temperature}
        if self.temperature > 0:
            body["top_p"] = self.top_p
        if self.model:
            body["model"] = self.model
        if sample.is_chat:
            body["messages"] = sample.messages
            return f"{self.base}/v1/chat/completions", body
        body["prompt"] = sample.prompt
        return f"{self.base}/v1/completions", body

    def _read(self, resp, deadline: float) -> bytes:
        """The whole (decoded) body within the deadline and the size cap."""
        body = bytearray()
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise _TooBig(int(declared))
        for piece in resp.iter_content(CHUNK):
            body += piece
            if len(body) > self.max_response_bytes:
                raise _TooBig(len(body))
            if time.monotonic() > deadline:
                raise _Deadline
        return bytes(body)

    def _text(self, body: bytes, n: int) -> str:
        from llmops.redact import scrub

        return scrub(body[:n].decode("utf-8", "replace"), [self.api_key, self._auth[1] if self._auth else ""])

    def call(self, sample: Sample) -> Generation:
        import requests

        url, body = self._request(sample)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
            t0 = time.perf_counter()
            deadline = time.monotonic() + self.timeout
            watch = _Watchdog(self.timeout)
            try:
                with watch, self._session().post(url, json=body, stream=True,
                                                 timeout=(min(self.timeout, 10.0), self.timeout)) as resp:
                    data = self._read(resp, deadline)
            except _TooBig as exc:
                raise InfraError(f"{url} sent a reply larger than {self.max_response_bytes} bytes "
                                 f"({exc.args[0]}+ bytes), so it was not read",
                                 "check that --endpoint is an OpenAI-compatible server and --max-new-tokens is "
                                 "sane") from None
            except (_Deadline, requests.RequestException, OSError) as exc:
                if not (watch.fired or isinstance(exc, _Deadline)):
                    last = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    continue
            if watch.fired or time.monotonic() > deadline:  # the socket was shut: what was read is cut short
                last = f"no complete reply within --timeout {self.timeout:g}s (a total deadline per request)"
                continue
            latency = time.perf_counter() - t0
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {self._text(data, 200)}"
                continue
            if resp.status_code in (401, 403):
                raise UsageError(f"{url} refused the request (HTTP {resp.status_code})",
                                 "set the API key in the environment variable named by --api-key-env")
            if resp.status_code == 404:
                raise UsageError(f"{url} answered 404", "is this an OpenAI-compatible server? Give the base URL "
                                 "(http://host:port), the /v1/... paths are added")
            if resp.status_code >= 400:
                raise InfraError(f"{url} answered HTTP {resp.status_code}: {self._text(data, 300)}",
                                 "check the request the server rejected (model name, max tokens)")
            return self._parse(data, url, sample, latency)
        raise InfraError(f"endpoint {self.base} unreachable after {self.retries + 1} attempts ({last})",
                         "check the URL, that the deployment is up and reachable from this runner, or raise "
                         "--timeout/--retries")

    def _parse(self, body: bytes, url: str, sample: Sample, latency: float) -> Generation:
        import json

        try:
            data = json.loads(body)
            choice = data["choices"][0]
            text = choice["message"]["content"] if sample.is_chat else choice["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
            raise InfraError(f"{url} sent a reply that is not an OpenAI-style completion ({type(exc).__name__}): "
                             f"{self._text(body, 200)}", "point --endpoint at an OpenAI-compatible server") from None
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        p_tok, o_tok = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Generation(text, latency, p_tok if isinstance(p_tok, int) else None,
                          o_tok if isinstance(o_tok, int) else None)

    def generate(self, samples: list[Sample]) -> Generations:
        items: list[Generation | None] = [None] * len(samples)
        bar = progress(len(samples), "requesting") if self.show_progress else None
        started = time.perf_counter()
        if samples:
            items[0] = self.call(samples[0])  # alone first: an unreachable endpoint fails fast
            if bar is not None:
                bar.update(1)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="eval-endpoint")
        try:
            futures = {pool.submit(self.call, s): i for i, s in enumerate(samples) if i > 0}
            for fut in as_completed(futures):
                items[futures[fut]] = fut.result()
                if bar is not None:
                    bar.update(1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - started
        return Generations([g for g in items if g is not None], seconds, self.info())
