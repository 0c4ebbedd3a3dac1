"""validate-data: stream-check training data (JSONL, Parquet, Arrow, CSV, datasets folders) before anyone spends
GPU hours on it.

    python scripts/validate_data.py --input data/training.jsonl --schema data/schema.json --min-samples 10000

Every option also reads the action input of the same name (INPUT_<NAME>). Exit codes: 0 every enabled check
passed; 1 the data failed a check (every bad row is listed in the report); 2 the input or configuration could
not be used (missing/empty/unreadable file, BOM, bad gzip, invalid schema, unknown flag values).
"""
from __future__ import annotations

import argparse

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.data.reader import MAX_LINE_BYTES
from llmops.errors import InputError, UsageError

LEVELS = ("off", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="validate_data.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True,
                   help="data file(s): .jsonl(.gz/.zst), .parquet, .arrow, .csv, .tsv, a datasets save_to_disk folder "
                        "or hf://datasets/<owner>/<name> from the Hugging Face cache; globs and commas allowed")
    p.add_argument("--schema", help="JSON Schema file every row must match")
    p.add_argument("--format", choices=("prompt-completion", "chat", "text"),
                   help="built-in preset (default: detected from the first row unless --schema is given)")
    p.add_argument("--min-samples", type=gha.positive_int, default=1, help="fewest rows without errors (default 1)")
    p.add_argument("--max-samples", type=gha.positive_int, help="most rows")
    p.add_argument("--eval-data", nargs="+", default=[], help="eval file(s) to check train/eval overlap against")
    p.add_argument("--overlap", choices=LEVELS, default="error", help="severity of train/eval overlap (default error)")
    p.add_argument("--ngram", type=gha.positive_int, default=13, help="words per n-gram for overlap (default 13)")
    p.add_argument("--tokenizer", help="local tokenizer folder for token counts")
    p.add_argument("--max-tokens", type=gha.positive_int, help="rows with more tokens fail (needs --tokenizer)")
    p.add_argument("--empty-fields", choices=LEVELS, default="error",
                   help="empty or whitespace-only string values (default error)")
    p.add_argument("--duplicates", choices=LEVELS, default="warning", help="exact duplicates (default warning)")
    p.add_argument("--near-duplicates", default="off",
                   help="MinHash near-duplicates: off, warning, error (true = warning, false = off)")
    p.add_argument("--near-threshold", type=float, default=0.8, help="Jaccard similarity for near-duplicates")
    p.add_argument("--pii", choices=LEVELS, default="off", help="e-mails, IPv4, API-key shapes (default off)")
    p.add_argument("--length-outliers", choices=LEVELS, default="off", help="rows far outside the usual length")
    p.add_argument("--fail-on", choices=("error", "warning"), default="error", help="do warnings fail the run?")
    p.add_argument("--report", default="validate-data-report.json", help="JSON report path")
    p.add_argument("--workers", type=gha.positive_int, default=0, help="processes for big files (0: automatic)")
    p.add_argument("--annotations", type=gha.positive_int, default=20, help="most problems annotated on lines")
    p.add_argument("--write-clean", help="write the rows that passed (duplicates dropped when that check is on) "
                   "here, in the input's format (.jsonl[.gz|.zst] for JSONL; .parquet, .arrow, .csv, .tsv for tables)")
    p.add_argument("--max-line-bytes", type=gha.byte_size, default=MAX_LINE_BYTES,
                   help="longest line read, e.g. 64MiB (default); a longer line is an input error naming it")
    return p


def _near(value: str) -> str:
    value = value.strip().lower()
    aliases = {"true": "warning", "false": "off"}
    value = aliases.get(value, value)
    if value not in LEVELS:
        raise UsageError(f"near-duplicates must be off, warning, error (or true/false), got {value!r}")
    return value


def main(argv=None) -> int:
    from llmops.data.report import emit, write_report
    from llmops.data.validate import Options, validate

    args = parse_args(build_parser(), argv)
    opts = Options(inputs=args.input, schema=args.schema, fmt=args.format, min_samples=args.min_samples,
                   max_samples=args.max_samples, eval_data=args.eval_data, tokenizer=args.tokenizer,
                   max_tokens=args.max_tokens, empty=args.empty_fields, duplicates=args.duplicates,
                   near=_near(args.near_duplicates), near_threshold=args.near_threshold, overlap=args.overlap,
                   ngram=args.ngram, pii=args.pii, length_outliers=args.length_outliers, fail_on=args.fail_on,
                   workers=args.workers, max_line=args.max_line_bytes, write_clean=args.write_clean or None)
    if opts.ngram < 1:
        raise UsageError("ngram must be at least 1")
    from llmops.data.sources import resolve
    from llmops.paths import refuse_input_as_output

    inputs = {"input data": [s.path for s in resolve(args.input)], "eval data": args.eval_data and
              [s.path for s in resolve(args.eval_data, "eval-data")], "schema": args.schema}
    refuse_input_as_output(args.report, inputs, "--report")
    if args.write_clean:
        from llmops.data.clean import output_kind

        refuse_input_as_output(args.write_clean, {**inputs, "report": args.report}, "--write-clean")
        output_kind(args.write_clean, resolve(args.input))
    out = validate(opts)
    try:
        try:
            path = write_report(out, args.report)
        except OSError as exc:
            raise InputError(f"cannot write the report to {args.report}: {exc.strerror or exc}",
                             "give --report a writable path") from None
        emit(out, path, args.annotations)
    finally:
        out.cleanup()
    return 0 if out.result == "pass" else 1


if __name__ == "__main__":
    raise SystemExit(run_script(main, title="validate-data"))
