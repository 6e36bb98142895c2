"""Content-addressed cache of trained models, attributions and metric values.

A key is the sha256 of everything that determines the cached value (plugin names, versions and
parameters, dataset content, seeds, library versions, the weights a model starts from). Writes are
atomic (a temporary file or folder renamed into place), so a run killed at any moment leaves either a
whole entry or none.

Several processes may share one cache directory. A folder entry is renamed into place under a per-key
lock (``root/.locks/<kind>/<key[:2]>/<key>.lock``, a ``filelock.FileLock``), and content-addressed
entries are immutable: a writer that finds the entry already there when it is done keeps it and
discards its own work (the first writer wins), so an entry, once there, never goes missing and never
changes under a reader. Only ``replace=True`` (for an entry found unreadable) and ``discard`` take an
entry away. A JSON entry is one ``os.replace`` of a whole file, which needs no lock.

Every entry carries a sha256 of its content, written with it and checked when it is read: a JSON entry
holds it beside its value (``{"bench-cache-digest": ..., "bench-cache-entry": [kind, key], "value":
...}``), a folder entry in a file ``.bench-digest`` inside it (over every other file's path and content).
The entry's kind and key are written with it and hashed with its content (``_bound_digest``), so an
entry copied or moved to another key's file is refused as an altered one is. An entry whose content no
longer matches (altered by hand or by a tool, corrupted on a shared file system, copied under another
key) is logged, removed and recomputed, never used. The digest proves the content is what was written
for that key; it does not authenticate the writer. Entries written before the key was bound (a digest
of the content only) are checked against their content, as they were written; entries written before
digests (no ``bench-cache-digest``, no ``.bench-digest``) are read as they are, unchecked. A run with
``--no-cache`` rewrites both with bound digests.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from filelock import FileLock

# The files that hold a checkpoint's weights, in the formats Hugging Face and torch write, and the config
# that says how they are wired together.
WEIGHT_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.h5",
    "*.msgpack",
    "*.gguf",
    "config.json",
)
# The files of a Hugging Face tokenizer: they decide what the weights are fed.
TOKENIZER_PATTERNS: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
)

log = logging.getLogger("bench.cache")

# A JSON entry's file: this prefix, the digest, the entry's kind and key (``_JSON_ENTRY``, then a JSON
# list), the value's text, then "}". The digest covers the kind, the key and the exact bytes of the value
# (``_bound_digest``), so checking it needs no second serialisation. Entries written before the key was
# bound have no ``_JSON_ENTRY`` part and a digest of the value's text alone.
_JSON_DIGEST_KEY = "bench-cache-digest"
_JSON_PREFIX = '{"' + _JSON_DIGEST_KEY + '": "'
_JSON_ENTRY_KEY = "bench-cache-entry"
_JSON_ENTRY = '", "' + _JSON_ENTRY_KEY + '": '
_JSON_VALUE = ', "value": '
DIGEST_FILE = ".bench-digest"  # a folder entry's digest, inside it

LOCK_TIMEOUT_S = 600.0  # a lock is held for renames and deletions only, never while a value is computed
_RACY_S = 2.0  # a file modified this recently is hashed again next time (timestamps are coarse)


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
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


# -- fingerprints of files on disk -----------------------------------------------------------------------

_FILE_HASHES: dict[tuple[str, int, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """sha256 of a file's content, memoised per process by (path, size, mtime_ns, inode). A file modified
    in the last few seconds is not memoised (a rewrite within one timestamp tick keeps its mtime)."""
    before = path.stat()
    memo_key = (str(path.resolve()), before.st_size, before.st_mtime_ns, before.st_ino)
    if memo_key in _FILE_HASHES:
        return _FILE_HASHES[memo_key]
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    after = path.stat()
    unchanged = (after.st_size, after.st_mtime_ns, after.st_ino) == memo_key[1:]
    if unchanged and time.time_ns() - after.st_mtime_ns > _RACY_S * 1e9:
        _FILE_HASHES[memo_key] = digest.hexdigest()
    return digest.hexdigest()


def files_fingerprint(folder: Path | str, patterns: Iterable[str] = WEIGHT_PATTERNS) -> dict[str, Any]:
    """What a folder's files matching ``patterns`` (shell patterns on the file name, e.g. ``*.safetensors``,
    searched in subfolders too; hidden files and folders skipped; symlinks followed) hold:
    ``{"sha256": ..., "files": n}``, the sha256 over the sorted relative paths and each file's content.

    Overwriting a matching file changes it; changing any other file does not. Each file's hash is
    memoised per process by (path, size, mtime_ns, inode), so calling this again costs a ``stat`` per
    file. For a model's ``weights_identity``.
    """
    folder = Path(folder)
    patterns = tuple(patterns)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    matched = []
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in names:
            if not name.startswith(".") and any(fnmatch.fnmatchcase(name, p) for p in patterns):
                path = Path(directory) / name
                matched.append((path.relative_to(folder).as_posix(), path))
    digest = hashlib.sha256()
    for relative, path in sorted(matched):
        digest.update(f"{relative}\0{_file_sha256(path)}\n".encode())
    return {"sha256": digest.hexdigest(), "files": len(matched)}


# -- the cache -------------------------------------------------------------------------------------------


def _fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable (POSIX; a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk before it is renamed into place."""
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as file:
                    os.fsync(file.fileno())
        _fsync_directory(Path(directory))


def _tree_digest(root: Path) -> str:
    """sha256 over a folder's files (all of them, hidden ones included, but its ``DIGEST_FILE``): each
    one's path relative to ``root`` and content, in path order."""
    files = []
    for directory, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in names:
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if relative != DIGEST_FILE:
                files.append((relative, path))
    digest = hashlib.sha256()
    for relative, path in sorted(files):
        digest.update(f"{relative}\0{_file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _bound_digest(kind: str, key: str, content_digest: str) -> str:
    """The digest written with an entry: sha256 of its kind, its key and its content's sha256, so that an
    entry checks only under the key it was written for."""
    return hashlib.sha256(f"{kind}\0{key}\0{content_digest}".encode()).hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Cache:
    """A cache directory (see the module's docstring for how processes share one).

    ``read=False`` (``--no-cache``): every ``get_*`` misses, so everything is recomputed, except entries
    written since ``since`` (a time stamp, the run's start): what this run computed is shared between its
    steps and its workers, what earlier runs left is not read. Entries are then written afresh: JSON
    entries replace the old values, folder entries replace the old folders.

    ``read=True``: a folder entry already there stays as it is (content-addressed entries are
    immutable; ``put_directory`` returns the existing one), unless ``replace=True``.
    """

    def __init__(self, root: Path, read: bool = True, since: float | None = None):
        self.root = Path(root)
        self.read = read
        # ``since`` must come from the same clock that stamps the entries: take it from ``now()``.
        self.since = since

    def now(self) -> float:
        """The cache's file system's present time, as it stamps entries written now: the ``since`` to give
        a run's caches. ``time.time()`` is not: a kernel stamps files from a coarse clock that may lag it
        by a few milliseconds, and an entry written just after the run began would then read as older."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".clock-") as stamp:
            return os.fstat(stamp.fileno()).st_mtime

    def _readable(self, path: Path) -> bool:
        """Whether an existing entry may be read: always with ``read``, else only if written since
        ``since``."""
        if self.read:
            return True
        if self.since is None:
            return False
        try:
            return path.stat().st_mtime >= self.since
        except OSError:
            return False

    def _path(self, kind: str, key: str, suffix: str = "") -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def _lock(self, kind: str, key: str) -> FileLock:
        path = self.root / ".locks" / kind / key[:2] / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(path, timeout=LOCK_TIMEOUT_S)

    def get_json(self, kind: str, key: str) -> Any | None:
        """The entry's value, or None when there is none, ``read`` is off, or it cannot be read (call
        ``discard`` to log and remove an unreadable one, or just overwrite it with ``put_json``). An entry
        whose value does not match its digest is logged and removed, and None returned."""
        path = self._path(kind, key, ".json")
        if not path.exists() or not self._readable(path):
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None
        if not text.startswith(_JSON_PREFIX):  # written before digests: read as it is
            try:
                return json.loads(text)
            except ValueError:
                return None
        # The header (digest, and kind and key) ends where the value starts: the first ', "value": ',
        # which no JSON string in the header can hold (its quotes are escaped).
        header, separator, rest = text.partition(_JSON_VALUE)
        value_text = rest[:-1] if rest.endswith("}") else None
        try:
            fields = json.loads(header + "}") if separator and value_text is not None else None
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return None  # cut short (a copy that stopped half-way): unreadable
        content_digest = hashlib.sha256(value_text.encode("utf-8")).hexdigest()
        if _JSON_ENTRY_KEY not in fields:  # written before the key was bound: a digest of the value only
            intact = fields.get(_JSON_DIGEST_KEY) == content_digest
        else:
            intact = fields[_JSON_ENTRY_KEY] == [kind, key] and fields.get(_JSON_DIGEST_KEY) == _bound_digest(
                kind, key, content_digest
            )
        if not intact:
            self._reject(kind, key, path)
            return None
        try:
            return json.loads(value_text)
        except ValueError:
            return None

    def _reject(self, kind: str, key: str, path: Path) -> None:
        """An entry whose content does not match its digest: log it in one line, and remove it (if the
        cache is writable) so that it is recomputed, never used."""
        log.warning(
            "cache entry %s does not match the digest written with it (altered, corrupted, or copied from "
            "another key); discarding it and recomputing",
            path,
        )
        try:
            self.discard(kind, key)
        except OSError as error:
            log.warning("could not remove the altered cache entry %s (%s)", path, error)

    def put_json(self, kind: str, key: str, value: Any) -> None:
        """Write the entry with its kind, key and digest (a whole file renamed over the old one: readers see
        the old or the new value)."""
        path = self._path(kind, key, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        value_text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        digest = _bound_digest(kind, key, hashlib.sha256(value_text.encode("utf-8")).hexdigest())
        entry = json.dumps([kind, key])
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(f"{_JSON_PREFIX}{digest}{_JSON_ENTRY}{entry}{_JSON_VALUE}{value_text}}}")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)

    def get_directory(self, kind: str, key: str) -> Path | None:
        """The entry's folder, or None when there is none or ``read`` is off. A folder whose files do not
        match its digest is logged and removed, and None returned."""
        path = self._path(kind, key)
        if not (path.is_dir() and self._readable(path)):
            return None
        if not self._intact(path, kind, key):
            self._reject(kind, key, path)
            return None
        return path

    @staticmethod
    def _intact(path: Path, kind: str, key: str) -> bool:
        """Whether a folder entry's files match its digest, written for this kind and key (an entry
        written before digests is taken as it is; one written before the key was bound, with no
        ``kind`` and ``key`` in its digest file, is checked against its files only)."""
        try:
            recorded = json.loads((path / DIGEST_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return False
        if not isinstance(recorded, dict):
            return False
        try:
            content_digest = _tree_digest(path)
        except OSError:
            return False
        if "kind" not in recorded and "key" not in recorded:  # written before the key was bound
            return recorded.get("sha256") == content_digest
        return (recorded.get("kind"), recorded.get("key")) == (kind, key) and recorded.get(
            "sha256"
        ) == _bound_digest(kind, key, content_digest)

    def put_directory(
        self, kind: str, key: str, write: Callable[[Path], None], *, replace: bool = False
    ) -> Path:
        """Let ``write`` fill a fresh temporary folder, then move it into place in one rename; return the
        entry's path.

        If the entry is already there when ``write`` is done (another process wrote it meanwhile), the
        existing entry is kept, the new folder deleted, and the existing path returned: entries are
        content-addressed, so both hold the same thing (unless the existing one no longer matches its
        digest, which is replaced). ``replace=True`` (for an entry found unreadable; always when ``read``
        is off) puts the new folder in its place instead: under the key's lock the old entry is moved
        aside, the new one renamed in, then the old one deleted. The folder's digest is written into it
        (``DIGEST_FILE``) before it is renamed into place.
        """
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        replace = replace or not self.read
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
        old: Path | None = None
        try:
            write(temporary)
            digest = {"kind": kind, "key": key, "sha256": _bound_digest(kind, key, _tree_digest(temporary))}
            (temporary / DIGEST_FILE).write_text(json.dumps(digest), encoding="utf-8")
            _fsync_tree(temporary)
            with self._lock(kind, key):
                if os.path.lexists(path):
                    if not replace and path.is_dir() and self._intact(path, kind, key):
                        shutil.rmtree(temporary, ignore_errors=True)
                        return path
                    old = path.parent / f".old-{key}-{uuid.uuid4().hex}"
                    os.replace(path, old)
                try:
                    os.replace(temporary, path)
                except BaseException:
                    if old is not None:  # put the old entry back rather than leave none
                        os.replace(old, path)
                        old = None
                    raise
                _fsync_directory(path.parent)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        if old is not None:
            _remove(old)
        return path

    def discard(self, kind: str, key: str) -> bool:
        """Remove the entry (JSON or folder) under the key's lock, e.g. one found unreadable, so that it is
        recomputed; return whether there was one. Log the reason before calling."""
        removed = False
        with self._lock(kind, key):
            json_path = self._path(kind, key, ".json")
            if os.path.lexists(json_path):
                json_path.unlink(missing_ok=True)
                removed = True
            path = self._path(kind, key)
            old = None
            if os.path.lexists(path):
                old = path.parent / f".old-{key}-{uuid.uuid4().hex}"
                os.replace(path, old)
                removed = True
            if removed:
                _fsync_directory(path.parent)
        if old is not None:
            _remove(old)
        return removed
