"""Where a run may write: never onto one of its inputs, never outside the workspace by accident, and never over
a folder it did not create.

- ``refuse_input_as_output(output, inputs, flag)``: ``--report`` (or any output) naming one of the input files
  (the same file, through any spelling or link) is a ``UsageError``: the run would overwrite what it reads.
- ``workspace_path(path, what)``: a relative path that climbs out of the workspace (``../../x``) is a
  ``UsageError``; an absolute path is allowed on purpose (a model store) and reported as outside; returns the
  resolved path and whether it is outside, so the caller can say where it wrote.
- ``PARTIAL_MARK`` / ``claim_partial`` / ``fresh_partial``: a ``<output>.partial`` folder is marked when a run
  creates it; an existing one without the mark (someone's own folder) is never deleted without ``overwrite``.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from llmops.errors import UsageError

PARTIAL_MARK = ".llmops-partial"


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_input_as_output(output: str | os.PathLike | None, inputs: dict[str, Iterable[str | os.PathLike] | str
                                                                      | os.PathLike | None], flag: str) -> None:
    """Raise UsageError when ``output`` is one of the files in ``inputs`` ({input name: path or paths})."""
    if not output:
        return
    out = Path(output)
    for name, paths in inputs.items():
        if not paths:
            continue
        for item in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            if item and _same(out, Path(item)):
                raise UsageError(f"{flag} {output} is also the {name} ({item}): writing it would overwrite an input",
                                 f"give {flag} another path, e.g. {out.with_name(out.stem + '-report.json')}")


def workspace() -> Path:
    return Path(os.environ.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()


def workspace_path(path: str | os.PathLike, what: str) -> tuple[Path, bool]:
    """``(resolved path, outside the workspace?)``; a relative path escaping the workspace is a UsageError."""
    raw = Path(os.path.expanduser(str(path)))
    root = workspace()
    resolved = (raw if raw.is_absolute() else Path(os.getcwd()) / raw).resolve()
    inside = resolved == root or root in resolved.parents
    if not raw.is_absolute() and not inside:
        raise UsageError(f"{what} {path} is outside the workspace {root} (it resolves to {resolved})",
                         f"write inside the workspace, or give an absolute path if {resolved.parent} is meant "
                         "(a model store)")
    return resolved, not inside


def claim_partial(part: Path, overwrite: bool, what: str = "output-dir") -> None:
    """Check, before any work, that ``part`` may be (re)created: absent, or left by an earlier run (marked)."""
    if not part.exists() and not part.is_symlink():
        return
    if (part / PARTIAL_MARK).is_file() or overwrite:
        return
    raise UsageError(f"{part} exists and was not created by a training run (it has no {PARTIAL_MARK} mark); the "
                     f"run trains into <{what}>.partial and would delete it",
                     f"move or remove {part}, choose another {what}, or set overwrite: true to replace it")


def fresh_partial(part: Path) -> Path:
    """(Re)create ``part`` empty and marked as this run's; call ``claim_partial`` first."""
    if part.is_symlink() or part.is_file():
        part.unlink()
    elif part.exists():
        shutil.rmtree(part)
    part.mkdir(parents=True)
    (part / PARTIAL_MARK).write_text("created by llmops-actions train; removed when the run finishes\n")
    return part
