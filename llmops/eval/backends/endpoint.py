"""OpenAI-compatible HTTP endpoint backend (a staging deployment, vLLM, TGI, our model server, a hosted API).

Prompt rows go to ``/v1/completions``, chat rows to ``/v1/chat/completions``. Requests run concurrently with a
bound, each with a timeout; connection errors, timeouts, 429 and 5xx are retried with exponential backoff
(generation with temperature 0 is idempotent). The first request runs alone so an unreachable endpoint fails in
seconds with exit 3, not after every sample has timed out. The API key comes from an environment variable, never a
flag, and is masked in the logs (and scrubbed from any reply text quoted in an error: a server may echo it).

A hostile or broken server cannot exhaust the runner: a reply body is read in pieces and refused past
``max_response_bytes`` (default 8 MiB, counted after decompression), and ``timeout`` is a total deadline per
attempt, covering connect, headers and the whole body (a server trickling one byte a second is cut off).

Latency is the server's **service time**, not queueing: with ``latency_sample`` set, that many rows (a seeded
choice; every row when there are fewer) are sent one at a time first, and only their times become the latency
metrics. The other rows then run at ``concurrency``, and that phase alone gives the throughput (requests/s,
output tokens/s). Measured on one llama.cpp server, p50 was 6.4 s at concurrency 8 and 1.1 s at 1: a latency
threshold on the mixed number would depend on ``--concurrency``, not on the model. Where the server reports its
own time (llama.cpp ``timings``, TGI ``x-inference-time``) it is recorded beside (``served.server_seconds``).

A refusal shows the server's own message (``served.server_error``): a model name it does not serve is a usage
error (exit 2) naming the models ``GET /v1/models`` lists; another 4xx is a usage error too (the request is
wrong: a setting, a prompt too long); 408/429/5xx are retried and, still failing, exit 3 with the server's
message, as does a server that never answers. What the replies said they were (the ``model`` field, the
``X-Model-Version`` header, ``/v1/models``) is collected for the verdict (``served.Identity``).
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from llmops.errors import InfraError, UsageError
from llmops.eval.backends import Generation, Generations, progress
from llmops.eval.backends.served import Identity, model_refused, parse_error, server_seconds
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
                 max_response_bytes: int = MAX_RESPONSE_BYTES, latency_sample: int | None = None,
                 seed: int = 0) -> None:
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
        self.latency_sample, self.seed = latency_sample, seed  # None: no alone phase (the judge); 0: every row
        self.identity = Identity()
        self.latency: dict = {}
        self.throughput: dict = {}
        self._local = threading.local()

    def info(self) -> dict:
        return {"backend": self.name, "endpoint": self.base, "model": self.model or None,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "concurrency": self.concurrency, "timeout_s": self.timeout, "retries": self.retries,
                **({"latency": self.latency} if self.latency else {}),
                **({"throughput": self.throughput} if self.throughput else {})}

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

    def _get(self, path: str) -> tuple[int, bytes] | None:
        """One GET (status, body) within the deadline and size cap, or None when it got no answer."""
        import requests

        url, deadline, watch = f"{self.base}{path}", time.monotonic() + min(self.timeout, 10.0), _Watchdog(
            min(self.timeout, 10.0))
        try:
            with watch, self._session().get(url, stream=True, timeout=min(self.timeout, 10.0)) as resp:
                return resp.status_code, self._read(resp, deadline)
        except (_TooBig, _Deadline, requests.RequestException, OSError):
            return None

    def list_models(self) -> None:
        """What ``GET /v1/models`` lists, into ``identity.listed`` (servers without it: left None)."""
        import json

        got = self._get("/v1/models") if self.identity.listed is None else None
        if got is not None and got[0] == 200:
            try:
                self.identity.set_listed(json.loads(got[1]))
            except (ValueError, RecursionError):
                pass

    def _refused(self, url: str, status: int, data: bytes, sample: Sample) -> UsageError:
        """A 4xx the server will keep giving: its own message, and what to change (exit 2)."""
        err = parse_error(data)
        says = self._text(err.message.encode(), 300) if err.message else self._text(data, 200).strip()
        said = f": {says}" + (f" (code {err.code})" if err.code else "") if says else ""
        if status in (401, 403):
            return UsageError(f"{url} refused the request (HTTP {status}){said}",
                              "set the API key in the environment variable named by --api-key-env")
        if model_refused(status, err):
            self.list_models()
            ids = self.identity.listed_ids()
            which = f"--endpoint-model {self.model!r}" if self.model else "the request without --endpoint-model"
            served = (f"to one it serves: {', '.join(ids[:10])} (from GET {self.base}/v1/models)" if ids else
                      f"to a model the server serves (GET {self.base}/v1/models lists them)")
            return UsageError(f"{url} refused {which} (HTTP {status}){said}",
                              f"set --endpoint-model (input endpoint-model) {served}")
        if status == 404:
            return UsageError(f"{url} answered 404{said}", "is this an OpenAI-compatible server? Give the base URL "
                              "(http://host:port), the /v1/... paths are added")
        return UsageError(f"{url} rejected the request for sample {sample.id!r} (HTTP {status}){said}",
                          "change what the server names (--max-new-tokens, --temperature/--top-p, "
                          "--endpoint-model, a prompt longer than the model's context)")

    def call(self, sample: Sample) -> Generation:
        import requests

        url, body = self._request(sample)
        last, answered = "", False
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
                    answered = False
                    last = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    continue
            if watch.fired or time.monotonic() > deadline:  # the socket was shut: what was read is cut short
                answered = False
                last = f"no complete reply within --timeout {self.timeout:g}s (a total deadline per request)"
                continue
            latency = time.perf_counter() - t0
            if resp.status_code in RETRY_STATUS:
                err = parse_error(data)
                says = self._text(err.message.encode(), 300) if err.message else self._text(data, 200)
                last, answered = f"HTTP {resp.status_code}: {says}", True
                continue
            if resp.status_code >= 400:
                raise self._refused(url, resp.status_code, data, sample)
            return self._parse(data, url, sample, latency, resp.headers)
        if answered:
            raise InfraError(f"endpoint {self.base} kept failing: {last} (all {self.retries + 1} attempts)",
                             "the server answers but cannot serve: look at its logs; lower --concurrency if it "
                             "is overloaded, or raise --retries")
        raise InfraError(f"endpoint {self.base} unreachable after {self.retries + 1} attempts ({last})",
                         "check the URL, that the deployment is up and reachable from this runner, or raise "
                         "--timeout/--retries")

    def _parse(self, body: bytes, url: str, sample: Sample, latency: float, headers) -> Generation:
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
        self.identity.saw(data, headers)
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        p_tok, o_tok = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Generation(text, latency, p_tok if isinstance(p_tok, int) else None,
                          o_tok if isinstance(o_tok, int) else None, server_seconds(data, headers))

    def alone_rows(self, n: int) -> list[int]:
        """The rows sent one at a time (a seeded choice of ``latency_sample``; every row when n is that small)."""
        if self.latency_sample is None:
            return [0] if n else []  # the first alone, so an unreachable endpoint fails fast
        if self.latency_sample == 0 or n <= self.latency_sample:
            return list(range(n))
        import numpy as np

        return sorted(np.random.default_rng(self.seed).choice(n, self.latency_sample, replace=False).tolist())

    def generate(self, samples: list[Sample]) -> Generations:
        items: list[Generation | None] = [None] * len(samples)
        bar = progress(len(samples), "requesting") if self.show_progress else None
        started = time.perf_counter()
        alone = self.alone_rows(len(samples))
        for i in alone:  # one at a time: the first fails fast when unreachable; their times are service times
            items[i] = self.call(samples[i])
            if bar is not None:
                bar.update(1)
        rest = sorted(set(range(len(samples))) - set(alone))
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="eval-endpoint")
        phase = time.perf_counter()
        try:
            futures = {pool.submit(self.call, samples[i]): i for i in rest}
            for fut in as_completed(futures):
                items[futures[fut]] = fut.result()
                if bar is not None:
                    bar.update(1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if bar is not None:
                bar.close()
        phase = time.perf_counter() - phase
        seconds = time.perf_counter() - started
        gens = [g for g in items if g is not None]
        self.list_models()
        throughput = self._throughput(gens, rest, phase) if rest else self._throughput(gens, alone, seconds, 1)
        self.latency = self._latency_record(gens, alone, rest, throughput)
        self.throughput = throughput
        return Generations(gens, seconds, self.info(),
                           latency_rows=alone if self.latency_sample is not None else None,
                           throughput=throughput, served=self.identity.to_json())

    def _throughput(self, gens: list[Generation], rows: list[int], seconds: float,
                    concurrency: int | None = None) -> dict:
        out = [gens[i].output_tokens for i in rows]
        tokens = sum(out) if all(isinstance(t, int) for t in out) else None  # type: ignore[arg-type]
        return {"concurrency": concurrency or self.concurrency, "requests": len(rows), "seconds": seconds,
                "requests_per_s": len(rows) / seconds if seconds > 0 else None, "output_tokens": tokens,
                "output_tokens_per_s": tokens / seconds if tokens is not None and seconds > 0 else None}

    def _latency_record(self, gens: list[Generation], alone: list[int], rest: list[int], throughput: dict) -> dict:
        """Which latency is which, for the verdict: service time alone, client-seen under load, the server's own."""
        import numpy as np

        def p50(rows: list[int], attr: str = "latency_s") -> float | None:
            vals = [getattr(gens[i], attr) for i in rows if getattr(gens[i], attr) is not None]
            return float(np.percentile(vals, 50)) if vals else None
        if self.latency_sample is None:
            return {}
        server = [i for i in range(len(gens)) if gens[i].server_s is not None]
        return {"metrics_from": f"service time: {len(alone)} of {len(gens)} rows sent one at a time",
                "rows_alone": len(alone), "p50_alone_s": p50(alone),
                "p50_at_concurrency_s": p50(rest), "at_concurrency": throughput["concurrency"] if rest else None,
                "server_reported_rows": len(server), "server_reported_p50_s": p50(server, "server_s")}
