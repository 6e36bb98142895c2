"""Content-addressed cache of trained models, attributions and metric values.

A key is the sha256 of everything that determines the cached value (plugin names, versions and
parameters, dataset content, seeds, library versions). Writes are atomic (a temporary file or folder
renamed into place), so a run killed at any moment leaves either a whole entry or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

NUMERIC_LIBRARIES = ("torch", "transformers", "captum", "shap", "lime", "numpy", "scikit-learn", "tokenizers")


def library_versions(names: tuple[str, ...] = NUMERIC_LIBRARIES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions


def default_cache_dir() -> Path:
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bench"


def cache_key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Cache:
    """``read=False`` (``--no-cache``) recomputes everything but still refreshes the entries."""

    def __init__(self, root: Path, read: bool = True):
        self.root = Path(root)
        self.read = read

    def _path(self, kind: str, key: str, suffix: str = "") -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def get_json(self, kind: str, key: str) -> Any | None:
        path = self._path(kind, key, ".json")
        if not self.read or not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable entries are recomputed and overwritten

    def put_json(self, kind: str, key: str, value: Any) -> None:
        path = self._path(kind, key, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(value, file, ensure_ascii=False, allow_nan=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get_directory(self, kind: str, key: str) -> Path | None:
        path = self._path(kind, key)
        return path if self.read and path.is_dir() else None

    def put_directory(self, kind: str, key: str, write: Callable[[Path], None]) -> Path:
        """Let ``write`` fill a fresh temporary folder, then move it into place in one rename."""
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
        try:
            write(temporary)
            if path.exists():
                shutil.rmtree(path)
            os.replace(temporary, path)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return path
