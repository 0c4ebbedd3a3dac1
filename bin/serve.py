"""Run the reference model server on a local model folder (or the echo fake) until SIGTERM / Ctrl-C.

    python bin/serve.py --model-dir out/model --port 8000 [--prices prices.yaml]
    python bin/serve.py --echo --model-version drill-v2 --port 0      # no torch: load tests, canary drills

Prints ``llmops-serve listening on http://HOST:PORT`` once bound (/health answers 503 until the model is loaded),
logs JSON lines to stderr, exits 2 when the model folder or a flag is wrong. SIGTERM drains: /health answers 503
at once, requests keep being served until none is in flight and none came for --drain-idle seconds (at most
--drain-max seconds: give load balancers time to notice), the requests already received (streams included) finish,
then it exits 0. Ctrl-C stops at once. Fault injection:
LLMOPS_FAULT_ERROR_RATE, LLMOPS_FAULT_SEED, LLMOPS_FAULT_LATENCY_MS, LLMOPS_FAULT_QUALITY_SCORE (see
llmops/serve/faults.py).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.errors import InfraError, UsageError

DRAIN_MAX_S = 2.0
DRAIN_IDLE_S = 0.5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="OpenAI-compatible model server with Prometheus metrics.")
    src = p.add_argument_group("model")
    src.add_argument("--model-dir", help="model folder written by the train action (config.json, safetensors, "
                                         "tokenizer, llmops-model.json)")
    src.add_argument("--echo", action="store_true", help="serve the deterministic echo fake instead of a model")
    src.add_argument("--echo-token-ms", type=float, default=0.0, help="echo mode: delay per generated word")
    src.add_argument("--model-version", help="version label (default: llmops-model.json, else the folder name)")
    src.add_argument("--model-name", help="served model name (default: llmops-model.json, else the folder name)")
    src.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    net = p.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in a container)")
    net.add_argument("--port", type=gha.positive_int, default=8000, help="port (0: any free port)")
    net.add_argument("--max-tokens", type=gha.positive_int, default=16, help="default max_tokens per request")
    net.add_argument("--load-timeout", type=float, default=600.0, help="seconds to wait for the model to load")
    net.add_argument("--max-batch", type=gha.positive_int, default=16,
                     help="most sequences generated together (continuous batching; 1 = one at a time)")
    net.add_argument("--drain-max", type=float, default=DRAIN_MAX_S,
                     help="on SIGTERM: most seconds to keep accepting requests while /health says 503")
    net.add_argument("--drain-idle", type=float, default=DRAIN_IDLE_S,
                     help="on SIGTERM: stop accepting once nothing is in flight and no request came for this long")
    net.add_argument("--shutdown-timeout", type=float, default=30.0,
                     help="seconds the requests in flight (streams included) get to finish after listening stops")
    mon = p.add_argument_group("monitoring")
    mon.add_argument("--prices", help="price table (YAML/JSON) for the cost metrics")
    mon.add_argument("--quality-score", type=float, help="initial value of the online quality gauge (0..1)")
    mon.add_argument("--quality-window", type=gha.positive_int, default=100,
                     help="feedback scores averaged by the quality gauge")
    mon.add_argument("--log-content", action="store_true",
                     help="log prompt and response text (default: only lengths and sha256 hashes)")
    return p


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    if args.echo == bool(args.model_dir):
        raise UsageError("give exactly one of --model-dir DIR or --echo",
                         "--model-dir serves a trained model; --echo serves the fake generator for drills")
    if args.quality_score is not None and not 0 <= args.quality_score <= 1:
        raise UsageError(f"--quality-score must be from 0 to 1, got {args.quality_score}")
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    for flag in ("drain_max", "drain_idle", "shutdown_timeout"):
        if not getattr(args, flag) >= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0 seconds, got {getattr(args, flag)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llmops.monitoring.cost import PriceTable
    from llmops.monitoring.logs import RequestLogger
    from llmops.serve.faults import Faults
    from llmops.serve.generators import EchoGenerator, TransformersGenerator, read_model_info
    from llmops.serve.server import ModelServer

    log = RequestLogger("llmops.serve", log_content=args.log_content)
    faults = Faults.from_env()
    prices = PriceTable.load(args.prices) if args.prices else None
    if args.echo:
        generator = EchoGenerator(token_delay_s=max(0.0, args.echo_token_ms) / 1000.0)
    else:
        generator = TransformersGenerator(args.model_dir, device=args.device)
    info = read_model_info(args.model_dir, version=args.model_version, name=args.model_name,
                           warn=lambda msg: log.event("model_info_warning", message=msg))
    try:
        server = ModelServer(generator, info, host=args.host, port=args.port, faults=faults, prices=prices,
                             logger=log, default_max_tokens=args.max_tokens, quality_score=args.quality_score,
                             quality_window=max(1, args.quality_window), max_batch=args.max_batch,
                             shutdown_timeout=args.shutdown_timeout)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                         "pick a free port with --port (0 picks one)") from None
    term = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: term.set())  # drain instead of run_script's unwinding
    server.start()
    try:
        print(f"llmops-serve listening on {server.url} (model {info.name}, version {info.version})", flush=True)
        deadline = time.monotonic() + args.load_timeout
        while not server.wait_loaded(0.2) and not term.is_set():  # SIGTERM while loading also drains
            if time.monotonic() > deadline:
                raise InfraError(f"the model did not load within {args.load_timeout:g}s",
                                 "raise --load-timeout, or check the machine has the memory for the model")
        if not term.is_set():
            server.wait_ready(0)
            print(f"llmops-serve ready: {info.version}", flush=True)
        while not term.wait(0.5):
            pass
    except KeyboardInterrupt:
        log.event("shutdown", model_version=info.version)
        server.stop()
        return 0
    except BaseException:
        server.stop()
        raise
    finally:
        sys.stdout.flush()
    log.event("shutdown", model_version=info.version, drain=True)
    server.drain(args.drain_max, args.drain_idle)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, title="serve"))
