"""Hand-written Prometheus text exposition, for the exporters of servers not built on prometheus_client (Rust's
metrics-exporter-prometheus, prometheus-cpp, client_golang, Envoy): counters without a forced ``_total``, histogram
bounds printed as those libraries print them (plain decimals, integers without a point).
"""
from __future__ import annotations

import threading
from decimal import Decimal


def _num(value: float) -> str:
    """A sample or bound as the Go/Rust/C++ exporters print it: plain decimal, integers without a point."""
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


class Text:
    """Hand-written text exposition for servers not built on prometheus_client (Rust, C++, Go, Envoy)."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}
        self.series: dict[tuple[str, tuple], float] = {}
        self.hist: dict[tuple[str, tuple], list] = {}
        self.bounds: dict[str, tuple] = {}
        self.lock = threading.Lock()

    def counter(self, name: str, labels: dict[str, str], by: float = 1.0) -> None:
        with self.lock:
            self.types[name] = "counter"
            key = (name, tuple(sorted(labels.items())))
            self.series[key] = self.series.get(key, 0.0) + by

    def histogram(self, name: str, bounds: tuple, labels: dict[str, str], value: float | None) -> None:
        with self.lock:
            self.types[name], self.bounds[name] = "histogram", bounds
            key = (name, tuple(sorted(labels.items())))
            entry = self.hist.setdefault(key, [[0] * len(bounds), 0.0, 0])
            if value is not None:
                for i, bound in enumerate(bounds):
                    if value <= bound:
                        entry[0][i] += 1
                entry[1] += value
                entry[2] += 1

    def render(self) -> bytes:
        def fmt(labels: tuple, extra: tuple = ()) -> str:
            items = list(labels) + list(extra)
            return "{" + ",".join(f'{k}="{v}"' for k, v in items) + "}" if items else ""
        lines: list[str] = []
        with self.lock:
            for name, kind in sorted(self.types.items()):
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    lines += [f"{n}{fmt(lab)} {_num(v)}" for (n, lab), v in sorted(self.series.items()) if n == name]
                    continue
                for (n, lab), (counts, total, count) in sorted(self.hist.items()):
                    if n != name:
                        continue
                    for bound, c in zip(self.bounds[name], counts, strict=True):
                        lines.append(f"{n}_bucket{fmt(lab, (('le', _num(bound)),))} {c}")
                    lines.append(f"{n}_bucket{fmt(lab, (('le', '+Inf'),))} {count}")
                    lines.append(f"{n}_sum{fmt(lab)} {_num(total)}")
                    lines.append(f"{n}_count{fmt(lab)} {count}")
        return ("\n".join(lines) + "\n").encode()
