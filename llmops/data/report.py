"""validate-data's outputs: the JSON report (every problem, streamed from the spool files), the step summary
(counts per check, the first problems with their lines, a length histogram), capped annotations on the data
file lines, and the action outputs.

A problem in a JSONL file names its line (``line``); one in a table (Parquet, Arrow, CSV, a save_to_disk folder)
names its 0-based ``row`` and, for Parquet, its ``row_group`` (``line`` is null): the summary shows
``file row N (row group G)`` and the annotation, which has no line to point at, starts with the row.
"""
from __future__ import annotations

import os
from pathlib import Path

import orjson

from llmops import __version__, gha
from llmops.data.problems import record_where
from llmops.data.validate import Outcome

CHECKS = ("json", "format", "schema", "empty-fields", "duplicates", "near-duplicates", "overlap", "pii",
          "max-tokens", "length-outliers", "min-samples", "max-samples")
SHOWN = 30


def _enabled(out: Outcome) -> dict[str, str]:
    """Check name -> severity it reports with ('off' when disabled)."""
    o = out.options
    return {
        "json": "error", "format": "error" if out.fmt and not (o.schema and not o.fmt) else "off",
        "schema": "error" if o.schema else "off", "empty-fields": o.empty, "duplicates": o.duplicates,
        "near-duplicates": o.near, "overlap": o.overlap if o.eval_data else "off", "pii": o.pii,
        "max-tokens": "error" if o.max_tokens else "off", "length-outliers": o.length_outliers,
        "min-samples": "error", "max-samples": "error" if o.max_samples is not None else "off",
    }


def check_table(out: Outcome) -> list[dict]:
    rows = []
    for name, severity in _enabled(out).items():
        errors = out.counts.get(f"{name}/error", 0)
        warnings = out.counts.get(f"{name}/warning", 0)
        if severity == "off" and not errors + warnings:
            status = "off"
        elif errors or (warnings and out.options.fail_on == "warning"):
            status = "fail"
        elif warnings:
            status = "warn"
        else:
            status = "pass"
        rows.append({"check": name, "severity": severity, "status": status, "errors": errors, "warnings": warnings})
    return rows


def header(out: Outcome) -> dict:
    o = out.options
    return {
        "tool": "llmops validate-data", "version": __version__, "result": out.result,
        "files": out.files, "file_formats": out.kinds, "format": out.fmt, "format_source": out.fmt_source, "schema": o.schema,
        "num_samples": out.rows, "num_valid": out.rows - out.rows_with_errors, "num_errors": out.rows_with_errors,
        "num_warnings": out.rows_with_warnings, "dataset_errors": out.dataset_errors,
        "config": {"min_samples": o.min_samples, "max_samples": o.max_samples, "eval_data": o.eval_data,
                   "tokenizer": o.tokenizer, "max_tokens": o.max_tokens, "empty_fields": o.empty,
                   "duplicates": o.duplicates, "near_duplicates": o.near, "near_threshold": o.near_threshold,
                   "overlap": o.overlap, "ngram": o.ngram, "pii": o.pii, "length_outliers": o.length_outliers,
                   "fail_on": o.fail_on, "write_clean": o.write_clean},
        "checks": {r.pop("check"): r for r in check_table(out)}, "stats": out.stats,
        "num_problems": sum(out.counts.values()),
        **({"clean": out.clean} if out.clean else {}),
    }


def write_report(out: Outcome, path: str | Path) -> Path:
    """Write the report; ``problems`` holds every problem (per-row checks first, then dataset-wide ones)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    head = orjson.dumps(header(out), option=orjson.OPT_INDENT_2)
    with open(path, "wb") as fh:
        fh.write(head[:-2] + b',\n  "problems": [')
        first = True
        spools = [(c.spool, off) for c, off in zip(out.chunks, out.line_offsets, strict=True) if c.spool]
        spools.append((out.extra_spool, 0))
        for spool, offset in spools:
            if not os.path.exists(spool):
                continue
            with open(spool, "rb") as src:
                for raw in src:
                    if offset:
                        rec = orjson.loads(raw)
                        rec["line"] += offset
                        raw = orjson.dumps(rec)
                    fh.write((b"\n    " if first else b",\n    ") + raw.rstrip(b"\n"))
                    first = False
        fh.write(b"\n  ]\n}\n")
    return path


def _where(p: dict) -> str:
    return record_where(p)


def _annotation_file(name: str) -> str:
    ws = os.environ.get("GITHUB_WORKSPACE")
    if ws and os.path.isabs(name):
        try:
            return os.path.relpath(name, ws)
        except ValueError:
            return name
    return name


def emit(out: Outcome, report_path: Path, annotations: int = 20) -> None:
    """Print/annotate the first problems, write the step summary and set the outputs."""
    total = sum(out.counts.values())
    ann = gha.Annotations(annotations)
    for p in out.kept:
        level = "error" if p["severity"] == "error" else "warning"
        where = f" at {p['path']}" if p["path"] not in ("$", None) else ""
        row = f"row {p['row']}" + (f" (row group {p['row_group']})" if "row_group" in p else "") + ": " \
            if "row" in p else ""
        ann.add(level, f"{row}{p['check']}{where}: {p['message']}", file=_annotation_file(p["file"]) if p["file"] else
                None, line=p["line"], title=f"validate-data: {p['check']}")
    ann.held_back += total - len(out.kept)
    ann.close(str(report_path))
    summary(out, report_path).write()
    outputs = {"result": out.result, "num-samples": out.rows, "num-errors": out.rows_with_errors,
               "report-path": str(report_path)}
    if out.clean:
        outputs.update({"clean-path": out.clean["path"], "clean-sha256": out.clean["sha256"],
                        "clean-rows": out.clean["rows"]})
    gha.set_outputs(outputs)


def summary(out: Outcome, report_path: Path) -> gha.Summary:
    s = gha.Summary()
    icon = "✅" if out.result == "pass" else "❌"
    s.heading(f"{icon} validate-data: {out.result}")
    fmt = f"`{out.fmt}` ({out.fmt_source})" if out.fmt else "no preset"
    s.text(f"{out.rows} rows in {len(out.files)} file(s), {out.rows - out.rows_with_errors} valid, "
           f"{out.rows_with_errors} with errors, {out.rows_with_warnings} with warnings only. Format: {fmt}"
           + (f", schema `{out.options.schema}`" if out.options.schema else "") + ".")
    s.table(["check", "severity", "status", "errors", "warnings"],
            [[r["check"], r["severity"], r["status"], r["errors"], r["warnings"]] for r in check_table(out)])
    if out.kept:
        shown = out.kept[:SHOWN]
        total = sum(out.counts.values())
        s.heading(f"First {len(shown)} of {total} problems", 3)
        s.table(["where", "path", "check", "severity", "message"],
                [[_where(p), p["path"] or "", p["check"], p["severity"], p["message"]] for p in shown])
    for key, unit in (("tokens", "tokens"), ("chars", "characters")):
        stats = out.stats.get(key)
        if stats:
            s.heading(f"Row length ({unit})", 3)
            s.text(f"min {stats['min']}, median {stats['p50']}, p95 {stats['p95']}, p99 {stats['p99']}, "
                   f"max {stats['max']}")
            peak = max(h["rows"] for h in stats["histogram"])
            s.table([unit, "rows", ""], [[f"{h['from']}-{h['to']}", h["rows"],
                                          "█" * max(1, round(30 * h["rows"] / peak))] for h in stats["histogram"]])
            break
    if out.clean:
        c = out.clean
        s.text(f"Clean rows: {c['rows']} written to `{c['path']}` ({c['format']}, sha256 `{c['sha256']}`).")
    s.text(f"Full report: `{report_path}`")
    return s
