"""Integration test of a deployed model server: health, smoke completions or chats, and checks on each answer.

    python bin/integration_test.py --endpoint http://llm-server.staging.svc:8000
    python bin/integration_test.py --endpoint URL --preset vllm --api chat --model v2
    python bin/integration_test.py --endpoint URL --cases smoke.jsonl --max-latency-ms 2000

Checks: ``GET <endpoint><health-path>`` answers 2xx within ``--timeout`` seconds (the path from ``--preset``:
``/health`` for llmops, vllm, tgi and sglang, ``/v2/health/ready`` for triton, ``/v1/models`` for any other
OpenAI-compatible server such as llama.cpp; ``--health-path`` overrides it). A 404/405/501 there fails at once:
the server has no such path, and waiting would not give it one. Then each prompt (``--prompt``, repeatable, or
``--cases`` JSONL rows ``{"prompt", "expect"?: substring, "expect_regex"?: pattern}``) is sent to ``POST
<endpoint>/v1/completions`` (``choices[0].text``) or, with ``--api chat``, ``/v1/chat/completions``
(``choices[0].message.content``): status 200 (else the server's own error body is shown), a non-empty answer,
latency under the limit, the expectation met. Exit codes: 0 all passed, 1 a check failed, 2 bad input, 3 the
endpoint never answered.
"""
from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.errors import CheckFailed, InfraError, InputError, UsageError

SERVER_PRESETS = ("llmops", "vllm", "tgi", "sglang", "triton", "openai")
NO_SUCH_PATH = (404, 405, 501)


def health_path(preset: str) -> str:
    """The health path of a server preset (the metrics presets own it; ``openai``: servers with no health)."""
    from llmops.canary import presets

    return "/v1/models" if preset == "openai" else presets.get(preset).health_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="integration_test.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="base URL of the model server, e.g. http://host:8000")
    p.add_argument("--preset", choices=SERVER_PRESETS, default="llmops",
                   help="the server: sets the health path (default llmops: /health; openai: /v1/models)")
    p.add_argument("--health-path", help="health path (default: the preset's)")
    p.add_argument("--api", choices=("completions", "chat"), default="completions",
                   help="smoke-test /v1/completions or /v1/chat/completions (chat-only servers)")
    p.add_argument("--prompt", action="append", default=[], help="a smoke prompt (repeatable)")
    p.add_argument("--cases", help="JSONL with prompt and optional expect / expect_regex per row")
    p.add_argument("--model", help="model name sent with each completion")
    p.add_argument("--max-tokens", type=gha.positive_int, default=16)
    p.add_argument("--max-latency-ms", type=float, default=0.0, help="fail answers slower than this (0: no limit)")
    p.add_argument("--allow-empty", action="store_true", help="an empty completion text is not a failure")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the server to become healthy")
    p.add_argument("--request-timeout", type=float, default=30.0, help="seconds per request")
    return p


def load_cases(args: argparse.Namespace) -> list[dict]:
    from llmops.data.reader import read_jsonl

    cases = [{"prompt": p} for p in args.prompt]
    if args.cases:
        for no, row in read_jsonl(args.cases, what="cases"):
            if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                raise InputError(f"{args.cases}:{no}: each case needs a non-empty string 'prompt'",
                                 file=args.cases, line=no)
            unknown = set(row) - {"prompt", "expect", "expect_regex", "max_tokens", "id"}
            if unknown:
                raise InputError(f"{args.cases}:{no}: unknown keys {sorted(unknown)}",
                                 "allowed: prompt, expect, expect_regex, max_tokens, id", file=args.cases, line=no)
            if "expect_regex" in row:
                try:
                    re.compile(row["expect_regex"])
                except (re.error, TypeError) as exc:
                    raise InputError(f"{args.cases}:{no}: bad expect_regex: {exc}", file=args.cases, line=no) from None
            cases.append(row)
    return cases or [{"prompt": "Say hello."}]


def run_case(session, url: str, case: dict, args: argparse.Namespace) -> tuple[bool, str, float]:
    import requests

    from llmops.k8s.health import completion_problem

    body: dict = {"max_tokens": int(case.get("max_tokens") or args.max_tokens), "temperature": 0}
    if args.api == "chat":
        body["messages"] = [{"role": "user", "content": case["prompt"]}]
    else:
        body["prompt"] = case["prompt"]
    if args.model:
        body["model"] = args.model
    start = time.perf_counter()
    try:
        resp = session.post(url, json=body, timeout=args.request_timeout)
    except requests.RequestException as exc:
        return False, f"{type(exc).__name__}: {str(exc)[:200]}", (time.perf_counter() - start) * 1000
    ms = (time.perf_counter() - start) * 1000
    problem = completion_problem(resp) if args.api == "completions" else chat_problem(resp)
    if problem:
        return False, problem, ms
    choice = resp.json()["choices"][0]
    text = choice["text"] if args.api == "completions" else choice["message"]["content"]
    if not text.strip() and not args.allow_empty:
        return False, "empty completion", ms
    if args.max_latency_ms and ms > args.max_latency_ms:
        return False, f"took {ms:.0f} ms > {args.max_latency_ms:g} ms", ms
    if case.get("expect") and str(case["expect"]) not in text:
        return False, f"answer does not contain {case['expect']!r}: {text[:80]!r}", ms
    if case.get("expect_regex") and not re.search(case["expect_regex"], text):
        return False, f"answer does not match /{case['expect_regex']}/: {text[:80]!r}", ms
    return True, text.strip().replace("\n", " ")[:80], ms


def chat_problem(resp) -> str | None:
    """What is wrong with a /v1/chat/completions answer, or None."""
    from llmops.k8s.health import completion_problem

    if resp.status_code != 200:
        return completion_problem(resp)  # names the status and the server's own error body
    try:
        body = resp.json()
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return f"POST {resp.url} answered without choices[0].message.content: {resp.text[:200]!r}"
    return None if isinstance(content, str) else f"POST {resp.url}: message.content is not a string"


def wait_healthy(session, url: str, args: argparse.Namespace) -> int:
    """Poll ``url`` until 2xx; a 404/405/501 fails at once; returns the number of tries."""
    import requests

    start, tries, reached, problem = time.monotonic(), 0, False, ""
    while True:
        tries += 1
        try:
            resp = session.get(url, timeout=args.request_timeout)
        except requests.RequestException as exc:
            problem = f"GET {url}: {type(exc).__name__}: {str(exc)[:200]}"
        else:
            reached = True
            if 200 <= resp.status_code < 300:
                return tries
            problem = f"GET {url} answered {resp.status_code}: {resp.text.strip()[:200]}"
            if resp.status_code in NO_SUCH_PATH:
                raise CheckFailed(f"{problem} (the server has no such path)",
                                  "set --preset to your server (vllm, tgi, sglang, triton; openai for servers "
                                  "without a health path) or --health-path, e.g. /v1/models")
        print(f"health check {tries}: {problem}", flush=True)
        if time.monotonic() - start >= args.timeout:
            if not reached:
                raise InfraError(f"{url} never answered: {problem}",
                                 "check the endpoint URL and that the server is running")
            raise CheckFailed(f"health check failed after {tries} tries: {problem}",
                              "look at the server's logs; raise --timeout if it only starts slowly")
        time.sleep(min(1.0, max(0.0, args.timeout - (time.monotonic() - start))))


def main(argv: Sequence[str] | None = None) -> int:
    import requests

    args = parse_args(build_parser(), argv)
    endpoint = args.endpoint.rstrip("/")
    if not re.match(r"^https?://[^/]+", endpoint):
        raise UsageError(f"--endpoint must be an http(s) URL, got {args.endpoint!r}", "e.g. http://host:8000")
    cases = load_cases(args)
    path = args.health_path or health_path(args.preset)
    start = time.monotonic()
    rows, failed = [], 0
    with requests.Session() as session:
        tries = wait_healthy(session, endpoint + "/" + path.lstrip("/"), args)
        print(f"healthy after {tries} tries ({time.monotonic() - start:.1f}s)", flush=True)
        api = "/v1/completions" if args.api == "completions" else "/v1/chat/completions"
        for i, case in enumerate(cases, 1):
            ok, detail, ms = run_case(session, endpoint + api, case, args)
            failed += not ok
            rows.append([case.get("id", i), "pass" if ok else "FAIL", f"{ms:.0f}", detail])
            print(f"{'ok  ' if ok else 'FAIL'} {case.get('id', i)} {ms:.0f} ms {detail}", flush=True)
    summary = gha.Summary().heading(f"integration test: {endpoint}")
    summary.table(["case", "result", "ms", "answer / problem"], rows)
    if gha.in_runner():
        summary.write()
    gha.set_outputs({"passed": len(cases) - failed, "failed": failed})
    if failed:
        raise CheckFailed(f"{failed} of {len(cases)} integration checks failed against {endpoint}",
                          "see the table above for each failing prompt")
    gha.set_output("result", "pass")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, title="integration-test"))
