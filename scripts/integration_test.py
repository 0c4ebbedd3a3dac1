"""Integration test of a deployed model server: health, smoke completions, and checks on each answer.

    python scripts/integration_test.py --endpoint http://llm-server.staging.svc:8000
    python scripts/integration_test.py --endpoint URL --cases smoke.jsonl --max-latency-ms 2000

Checks: ``GET <endpoint><health-path>`` answers 2xx within ``--timeout`` seconds; then each prompt (``--prompt``,
repeatable, or ``--cases`` JSONL rows ``{"prompt", "expect"?: substring, "expect_regex"?: pattern}``) is sent to
``POST <endpoint>/v1/completions``: status 200, ``choices[0].text`` a non-empty string, latency under the limit, the
expectation met. Exit codes: 0 all passed, 1 a check failed, 2 bad input, 3 the endpoint never answered.
"""
from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence

from llmops import gha
from llmops.cli import run_script
from llmops.errors import CheckFailed, InfraError, InputError, UsageError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="integration_test.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="base URL of the model server, e.g. http://host:8000")
    p.add_argument("--health-path", default="/health", help="health path (default /health)")
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

    body = {"prompt": case["prompt"], "max_tokens": int(case.get("max_tokens") or args.max_tokens), "temperature": 0}
    if args.model:
        body["model"] = args.model
    start = time.perf_counter()
    try:
        resp = session.post(url, json=body, timeout=args.request_timeout)
    except requests.RequestException as exc:
        return False, f"{type(exc).__name__}: {str(exc)[:200]}", (time.perf_counter() - start) * 1000
    ms = (time.perf_counter() - start) * 1000
    problem = completion_problem(resp)
    if problem:
        return False, problem, ms
    text = resp.json()["choices"][0]["text"]
    if not text.strip() and not args.allow_empty:
        return False, "empty completion", ms
    if args.max_latency_ms and ms > args.max_latency_ms:
        return False, f"took {ms:.0f} ms > {args.max_latency_ms:g} ms", ms
    if case.get("expect") and str(case["expect"]) not in text:
        return False, f"answer does not contain {case['expect']!r}: {text[:80]!r}", ms
    if case.get("expect_regex") and not re.search(case["expect_regex"], text):
        return False, f"answer does not match /{case['expect_regex']}/: {text[:80]!r}", ms
    return True, text.strip().replace("\n", " ")[:80], ms


def main(argv: Sequence[str] | None = None) -> int:
    import requests

    from llmops.k8s.health import HealthFailed, HealthSpec, wait_healthy

    args = gha.parse_args(build_parser(), argv)
    endpoint = args.endpoint.rstrip("/")
    if not re.match(r"^https?://[^/]+", endpoint):
        raise UsageError(f"--endpoint must be an http(s) URL, got {args.endpoint!r}", "e.g. http://host:8000")
    cases = load_cases(args)
    health = HealthSpec(endpoint + "/" + args.health_path.lstrip("/"), budget=args.timeout,
                        interval=1.0, request_timeout=args.request_timeout)
    try:
        report = wait_healthy(health, log=lambda m: print(m, flush=True))
    except HealthFailed as exc:
        if not exc.reached:
            raise InfraError(f"{endpoint} never answered: {exc.message}",
                             "check the endpoint URL and that the server is running") from None
        raise
    print(f"healthy after {report.attempts} tries ({report.elapsed:.1f}s)", flush=True)
    rows, failed = [], 0
    with requests.Session() as session:
        for i, case in enumerate(cases, 1):
            ok, detail, ms = run_case(session, endpoint + "/v1/completions", case, args)
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
