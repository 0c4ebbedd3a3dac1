"""Where predictions come from: a local model folder (``local``), an OpenAI-compatible endpoint (``endpoint``), or a
file of predictions made elsewhere. Each backend returns one ``Generation`` per sample, in sample order.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass
class Generation:
    text: str
    latency_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    server_s: float | None = None  # the server's own time for the request, where it reports one


@dataclass
class Generations:
    items: list[Generation]
    seconds: float | None  # wall time of the whole generation phase (None: unknown, e.g. a predictions file)
    info: dict
    latency_rows: list[int] | None = None  # rows whose latency is the service time (sent alone); None: every row
    throughput: dict | None = None  # {concurrency, requests, seconds, output_tokens} of the concurrent phase
    served: dict | None = None  # what the server said it served (backends.served.Identity.to_json())

    @property
    def texts(self) -> list[str]:
        return [g.text for g in self.items]


def progress(total: int, desc: str):
    """A tqdm bar on stderr (sparse updates when stderr is not a terminal, e.g. in CI logs)."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, file=sys.stderr, mininterval=0.2 if tty else 10.0, unit="sample",
                dynamic_ncols=tty, disable=total == 0)
