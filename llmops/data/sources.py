"""One reader for every data format validate-data, train and evaluate-and-gate take: what each input names, the
column types a preset needs, and the rows.

Kinds (``kind_of``): ``jsonl`` (.jsonl / .json lines, plain, .gz or .zst: llmops/data/reader.py streams the
bytes), ``parquet`` (streamed by row group), ``arrow`` (Arrow IPC file or stream: .arrow / .feather / .ipc,
memory-mapped), ``csv`` / ``tsv`` (pyarrow, every column read as text), ``datasets`` (a folder written by
``datasets.save_to_disk``: its Arrow files memory-mapped, read directly when state.json is a plain table's, else
through ``datasets.load_from_disk``, imported only then) and
``hf://datasets/<owner>/<name>[@<revision>][/<glob>]`` (the files of a dataset repo in the Hugging Face cache,
never downloaded: a repo that is not cached is an error saying how to cache it; without a glob the files whose
path names the train split, else every data file).

Where a row is: JSONL rows by 1-based line, table rows by 0-based row index (as pandas and ``datasets`` number
them) plus the row group for Parquet. ``iter_rows`` yields ``(where, row)`` for callers that want all-or-nothing
(train, evaluate); validate-data scans tables column-wise (llmops/data/scan_table.py). Unreadable files (a
corrupt Parquet footer, a bad CSV quote) are ``InputError`` (exit 2) with the file and the fix. Record batches
come in BATCH_ROWS rows, decoded one or two ahead by a thread (``read_ahead``), with Arrow on the C library's
allocator (``_system_pool``).
"""
from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmops.data.reader import check_regular, read_jsonl
from llmops.errors import InputError

TABLE_KINDS = ("parquet", "arrow", "csv", "tsv", "datasets")
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
            ".csv": "csv", ".tsv": "tsv"}
DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".jsonl.zst", ".parquet", ".arrow", ".csv", ".tsv")
BATCH_ROWS = 8192
HF_PREFIX = "hf://datasets/"


@dataclass(frozen=True)
class Source:
    path: str
    kind: str                       # jsonl | parquet | arrow | csv | tsv | datasets

    @property
    def table(self) -> bool:
        return self.kind in TABLE_KINDS

    def __str__(self) -> str:
        return self.path

    def __fspath__(self) -> str:
        return self.path


def kind_of(path: str | os.PathLike) -> str:
    name = str(path).lower()
    for suffix in (".gz", ".zst"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return SUFFIXES.get(os.path.splitext(name)[1], "jsonl")


def where(src: Source | str, line: int | None = None, row: int | None = None, group: int | None = None) -> str:
    """``file:line`` for JSONL, ``file row N (row group G)`` for tables."""
    if line is not None:
        return f"{src}:{line}"
    return f"{src} row {row}" + (f" (row group {group})" if group is not None else "")


def split_where(text: str) -> tuple[str, int | None]:
    """(file, line or None) of a ``where`` string."""
    file, sep, line = text.rpartition(":")
    if sep and line.isdigit():
        return file, int(line)
    return text.split(" row ")[0], None


def _folder(path: str, what: str) -> Source:
    p = Path(path)
    if (p / "dataset_dict.json").is_file():
        splits = sorted(d.name for d in p.iterdir() if (d / "state.json").is_file())
        raise InputError(f"{what}: {path} is a datasets DatasetDict folder with the splits {', '.join(splits)}",
                         f"give one split's folder, e.g. {p / (splits[0] if splits else 'train')}")
    if (p / "state.json").is_file() and (p / "dataset_info.json").is_file():
        return Source(path, "datasets")
    raise InputError(f"{what}: {path} is a directory", f"give a data file, a glob such as {path}/*.jsonl or "
                     f"{path}/*.parquet, or a folder written by datasets' save_to_disk")


def _hub(spec: str, what: str) -> list[Source]:
    rest = spec[len(HF_PREFIX):]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InputError(f"{what}: {spec!r} does not name a dataset", "write hf://datasets/<owner>/<name>, "
                         "optionally @<revision> and /<glob> of files inside the repo (e.g. /data/train-*.parquet)")
    name, _, rev = parts[1].partition("@")
    repo = f"{parts[0]}/{name}"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise InputError(f"{what}: reading {spec} needs huggingface_hub", "pip install 'llmops-actions[datasets]'"
                         ) from None
    try:
        root = snapshot_download(repo, repo_type="dataset", revision=rev or None, local_files_only=True)
    except (OSError, ValueError) as exc:  # LocalEntryNotFoundError (an OSError), a bad repo name (ValueError)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{what}: {spec} is not in the Hugging Face cache ({os.environ.get('HF_HUB_CACHE') or '~/.cache/huggingface/hub'}), "
                         f"and data is never downloaded here: {first}",
                         f"cache it on a machine with network (huggingface-cli download --repo-type dataset {repo}) "
                         "and point HF_HOME / HF_HUB_CACHE at that cache, or give the files' paths") from None
    if len(parts) == 3 and parts[2]:
        found = sorted(glob.glob(os.path.join(root, parts[2]), recursive=True))
    else:
        found = sorted(str(p) for p in Path(root).rglob("*") if p.is_file() and str(p).lower().endswith(DATA_SUFFIXES)
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        train = [p for p in found if "train" in os.path.relpath(p, root).lower()]
        found = train or found
    files = [f for f in found if os.path.isfile(f)]
    if not files:
        raise InputError(f"{what}: {spec}: the cached snapshot {root} holds no data file"
                         + (f" matching {parts[2]!r}" if len(parts) == 3 and parts[2] else ""),
                         f"files end in {', '.join(DATA_SUFFIXES)}; name the files with hf://datasets/{repo}/<glob>")
    return [Source(f, kind_of(f)) for f in files]


def resolve(specs: list[str] | str, what: str = "input") -> list[Source]:
    """Every input named by ``specs`` (paths, globs, commas/lines, save_to_disk folders, hf://datasets/...)."""
    from llmops.data.reader import split_spec

    if isinstance(specs, str):
        specs = [specs]
    out: list[Source] = []
    for spec in specs:
        for part in split_spec(spec):
            if part.startswith(HF_PREFIX):
                out += _hub(part, what)
            elif glob.has_magic(part) and not os.path.lexists(part):
                matches = sorted(glob.glob(part, recursive=True))
                if not matches:
                    raise InputError(f"{what}: no file matches {part!r}", "check the glob pattern and the working "
                                     "directory")
                out += [Source(m, kind_of(m)) for m in matches if os.path.isfile(m)]
                out += [_folder(m, what) for m in matches if os.path.isdir(m) and (Path(m) / "state.json").is_file()]
            elif os.path.isdir(part):
                out.append(_folder(part, what))
            else:
                out.append(Source(str(check_regular(part, what)), kind_of(part)))
    if not out:
        raise InputError(f"{what}: no files given", "pass at least one data file (.jsonl, .parquet, .csv, ...)")
    return out


def sha256(src: Source | str) -> str:
    """sha256 of a file's bytes; of a save_to_disk folder, of its files' names and bytes in name order."""
    digest = hashlib.sha256()
    path = Path(str(src))
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if path.is_dir():
            digest.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- tables

def _arrow_error(src: Source, exc: Exception, during: str = "") -> InputError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    fixes = {"parquet": "the file is not a complete Parquet file (corrupt or truncated footer?): re-export it "
                        "(pandas.DataFrame.to_parquet / pyarrow.parquet.write_table) and check the upload finished",
             "arrow": "write it with pyarrow.ipc (file or stream format) or datasets' save_to_disk",
             "csv": "a CSV row has the wrong number of fields or an unclosed quote: fix that row or re-export it",
             "datasets": "the folder is not a complete save_to_disk folder: write it again with Dataset.save_to_disk"}
    fixes["tsv"] = fixes["csv"]
    return InputError(f"{src}: cannot read as {src.kind}{during}: {first}", fixes[src.kind], file=str(src))


def read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """The items of ``items`` in order, produced by a thread up to ``depth`` ahead: Parquet decoding and Arrow and
    numpy work, which leave Python's lock free, run on the other core while the caller checks the batch before. An
    exception in ``items`` is raised here, after the items before it; closing this generator stops the thread at its
    next item."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    class End:
        def __init__(self, exc: BaseException | None = None):
            self.exc = exc

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            put(End(exc))
            return
        put(End())

    threading.Thread(target=work, name="read-ahead", daemon=True).start()
    try:
        while not isinstance(item := q.get(), End):
            yield item
        if item.exc is not None:
            raise item.exc
    finally:
        stop.set()


_STATE_KEYS = {"_data_files", "_fingerprint", "_format_columns", "_format_kwargs", "_format_type",
               "_output_all_columns", "_split"}


def _saved_arrow_files(folder: str) -> tuple[list[str], object] | None:
    """``(Arrow stream files, their schema)`` of a save_to_disk folder, read directly (memory-mapped, as
    ``load_from_disk`` maps them, without importing ``datasets``: a second per run) when its state.json holds only
    what save_to_disk writes for a plain table and the files' schemas agree; None sends the folder through
    ``datasets.load_from_disk``."""
    import json

    import pyarrow as pa

    try:
        state = json.loads((Path(folder) / "state.json").read_text())
        files = [str(Path(folder) / f["filename"]) for f in state["_data_files"]]
        if not isinstance(state, dict) or set(state) - _STATE_KEYS or not files:
            return None
        schemas = []
        for path in files:
            with pa.memory_map(path) as source:
                schemas.append(pa.ipc.open_stream(source).schema)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None  # let datasets read it, or say what is wrong with it
    return (files, schemas[0]) if all(s.equals(schemas[0]) for s in schemas) else None


def _system_pool() -> None:
    """Arrow allocations from the C library's malloc, unless ARROW_DEFAULT_MEMORY_POOL says otherwise: reading a
    table batch after batch, Arrow's default mimalloc pool returned and refaulted its pages for every batch (the
    columnar pass ran at about half speed, and peak memory grew with the file)."""
    import pyarrow as pa

    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL") and pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


class Table:
    """A table source opened once: its Arrow schema, row count when known, and record batches in order."""

    def __init__(self, src: Source):
        import pyarrow as pa

        _system_pool()
        self.src = src
        self.groups: list[int] | None = None  # first row of each Parquet row group
        self._pf = self._reader = self._csv = self._saved = None
        try:
            if src.kind == "parquet":
                import pyarrow.parquet as pq

                self._pf = pq.ParquetFile(src.path, memory_map=False, pre_buffer=False)  # its cache would keep every row group read
                self.schema = self._pf.schema_arrow
                meta = self._pf.metadata
                sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
                self.groups = [sum(sizes[:g]) for g in range(len(sizes))]
                self.num_rows = meta.num_rows
            elif src.kind == "arrow":
                source = pa.memory_map(src.path)
                try:
                    self._reader = pa.ipc.open_file(source)
                    self.num_rows = sum(self._reader.get_batch(i).num_rows for i in range(self._reader.num_record_batches))
                except pa.ArrowInvalid:
                    source.seek(0)
                    self._reader = pa.ipc.open_stream(source)
                    self.num_rows = None
                self.schema = self._reader.schema
            elif src.kind == "datasets" and (saved := _saved_arrow_files(src.path)) is not None:
                self._saved, self.schema = saved
                self.num_rows = None
            elif src.kind == "datasets":
                try:
                    import datasets
                except ImportError:
                    raise InputError(f"{src}: reading a save_to_disk folder needs the datasets package",
                                     "pip install 'llmops-actions[datasets]'", file=src.path) from None
                datasets.disable_progress_bars()
                self._table = datasets.load_from_disk(src.path, keep_in_memory=False).data.table
                self.schema, self.num_rows = self._table.schema, self._table.num_rows
            else:
                import pyarrow.csv as pacsv

                parse = pacsv.ParseOptions(delimiter="\t" if src.kind == "tsv" else ",", newlines_in_values=True)
                names = pacsv.open_csv(src.path, parse_options=parse).schema.names
                self._csv = pacsv.open_csv(src.path, read_options=pacsv.ReadOptions(block_size=1 << 22),
                                           parse_options=parse, convert_options=pacsv.ConvertOptions(
                                               column_types={n: pa.string() for n in names}))
                self.schema, self.num_rows = self._csv.schema, None
        except InputError:
            raise
        except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
            raise _arrow_error(src, exc) from None

    def batches(self, columns: list[str] | None = None) -> Iterator[tuple[int, int | None, object]]:
        """``(first row index, row group or None, RecordBatch)`` in file order."""
        import pyarrow as pa

        start, group = 0, None
        try:
            if self._pf is not None:
                def decode():
                    g = 0
                    try:
                        for g in range(self._pf.num_row_groups):
                            for batch in self._pf.iter_batches(BATCH_ROWS, row_groups=[g], columns=columns,
                                                                use_threads=False):
                                yield g, batch, None
                    except (pa.ArrowException, OSError) as exc:
                        yield g, None, exc

                for group, batch, exc in read_ahead(decode()):
                    if exc is not None:
                        raise exc
                    yield start, group, batch
                    start += batch.num_rows
                return
            if self._reader is not None:
                it = (self._reader.get_batch(i) for i in range(self._reader.num_record_batches)) \
                    if isinstance(self._reader, pa.ipc.RecordBatchFileReader) else iter(self._reader)
            elif self._saved is not None:
                it = (batch for path in self._saved for batch in pa.ipc.open_stream(pa.memory_map(path)))
            elif self._csv is not None:
                it = iter(self._csv)
            else:
                it = iter(self._table.to_batches())
            for part in read_ahead(_regroup(it)):
                if columns is not None:
                    part = part.select(columns)
                yield start, None, part
                start += part.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(self.src, exc, f" (row {start}" + (f", row group {group})" if group is not None
                                                                 else ")")) from None


def _regroup(batches: Iterator) -> Iterator:
    """Record batches of BATCH_ROWS rows (the last one shorter) from batches of any size: a save_to_disk folder
    holds batches of 1,000 rows, and each batch costs a fixed amount of work."""
    import pyarrow as pa

    pending, count = [], 0
    for batch in batches:
        while batch.num_rows:
            take = min(BATCH_ROWS - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == BATCH_ROWS:
                yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
                pending, count = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def is_text(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _chat_type(t) -> bool:
    import pyarrow as pa

    if is_text(t):  # messages stored as JSON text (CSV)
        return True
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return False
    fields = {f.name: f.type for f in t.value_type}
    return "role" in fields and is_text(fields["role"]) and ("content" not in fields or is_text(fields["content"])
                                                            or pa.types.is_null(fields["content"]))


PRESET_COLUMNS = {"prompt-completion": ("prompt", "completion"), "text": ("text",), "chat": ("messages",)}


def column_problems(schema, fmt: str | None) -> list[tuple[str, str]]:
    """``(column, message)`` for each column a preset needs that is missing or of the wrong type: checked once per
    file, so a column of ints where text is expected is one error, not one per row."""
    out = []
    for col in PRESET_COLUMNS.get(fmt or "", ()):
        if col not in schema.names:
            have = ", ".join(schema.names[:8]) or "none"
            out.append((col, f"column '{col}' is missing (the {fmt} format needs {', '.join(PRESET_COLUMNS[fmt])}; "
                             f"the file has {have}): rename the column or choose another format"))
            continue
        t = schema.field(col).type
        if col == "messages" and not _chat_type(t):
            out.append((col, f"column 'messages' is {t}, the chat format expects a list of {{role, content}} structs "
                             "(list<struct<role: string, content: string>>): write the conversations as lists of "
                             "messages"))
        elif col != "messages" and not is_text(t):
            out.append((col, f"column '{col}' is {t}, the {fmt} format expects text (string): write the column as "
                             f"strings (e.g. df['{col}'] = df['{col}'].astype(str)) or choose another format"))
    return out


def table_rows(batch) -> list[dict]:
    """A record batch as row dicts; null cells are left out (a column exists for every row, so null is how a table
    says the field is missing), so are null fields of chat message structs (Parquet gives every message every
    field any message has), and a messages column of JSON text is parsed."""
    import json

    rows = batch.to_pylist()
    if any(c.null_count for c in batch.columns):
        rows = [{k: v for k, v in row.items() if v is not None} for row in rows]  # a null cell is a missing field
    if "messages" in batch.schema.names:
        for row in rows:
            msgs = row.get("messages")
            if isinstance(msgs, str):
                try:
                    row["messages"] = json.loads(msgs)
                except ValueError:
                    continue
            elif isinstance(msgs, list):
                row["messages"] = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m
                                   for m in msgs]
    return rows


def iter_rows(src: Source | str, what: str = "data") -> Iterator[tuple[str, dict]]:
    """``(where, row)`` for every row of one input, or InputError naming the first unreadable one."""
    if not isinstance(src, Source):
        src = Source(str(src), kind_of(src))
    if not src.table:
        for no, row in read_jsonl(src.path, what):
            yield where(src, line=no), row
        return
    table = Table(src)
    count = 0
    for start, group, batch in table.batches():
        for i, row in enumerate(table_rows(batch)):
            yield where(src, row=start + i, group=group), row
        count += batch.num_rows
    if count == 0:
        raise InputError(f"{what} file {src} has no rows", "write at least one row", file=str(src))
