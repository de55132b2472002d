"""A persistent translation cache: reruns and benchmark settings never translate twice.

One sqlite file per cache directory (stdlib, no server). WAL journaling lets many worker
processes read while one writes, and ``busy_timeout`` makes concurrent writers wait instead
of failing; inserts are ``INSERT OR IGNORE`` of deterministic values, so two workers racing
on the same caption store the same row once. The file must sit on a local disk (sqlite
locking is unreliable on network filesystems); on a distributed runner each worker keeps its
own cache under a local directory.

Keys are ``(backend name, source, target, sha256(text))``; the backend name includes the
model (``marian:<model>``), so two models never share entries.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pairsift.models.translation.base import Translator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS translations (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    translation TEXT NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # stay well under sqlite's bound-parameter limit


def cache_key(backend: str, source: str, target: str, text: str) -> str:
    payload = "\x00".join((backend, source, target, text)).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


class TranslationCache:
    """Thread- and process-safe key/value store of translations under ``cache_dir``."""

    FILENAME = "translations.sqlite"

    def __init__(self, cache_dir: str | os.PathLike[str], timeout_s: float = 60.0) -> None:
        self.path = Path(cache_dir) / self.FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connection()  # fail early on an unwritable directory

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            conn.commit()
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(
        self, backend: str, source: str, target: str, texts: Sequence[str]
    ) -> dict[str, str]:
        """Cached translations of ``texts`` (those present), keyed by the source text."""
        keys = {cache_key(backend, source, target, text): text for text in texts}
        found: dict[str, str] = {}
        ordered = list(keys)
        with self._lock:
            conn = self._connection()
            for start in range(0, len(ordered), _CHUNK):
                chunk = ordered[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, translation FROM translations WHERE key IN ({marks})", chunk
                )
                for key, translation in rows:
                    found[keys[key]] = translation
        return found

    def put_many(
        self, backend: str, source: str, target: str, pairs: Sequence[tuple[str, str]]
    ) -> None:
        rows = [
            (cache_key(backend, source, target, text), backend, source, target, translation)
            for text, translation in pairs
        ]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            with conn:  # one transaction per batch
                conn.executemany("INSERT OR IGNORE INTO translations VALUES (?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return int(
                self._connection().execute("SELECT COUNT(*) FROM translations").fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.timeout_s = state["path"], state["timeout_s"]
        self._lock, self._conn, self._pid = threading.Lock(), None, -1


class CachedTranslator(Translator):
    """Serves cached translations and sends only the misses to ``inner``."""

    def __init__(self, inner: Translator, cache: TranslationCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.hits = 0
        self.misses = 0

    def supports(self, source: str, target: str) -> bool:
        return self.inner.supports(source, target)

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        found = self.cache.get_many(self.name, source, target, texts)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        self.hits += len(texts) - sum(1 for text in texts if text not in found)
        self.misses += len(missing)
        if missing:
            fresh = self.inner.translate(missing, source, target)
            self.cache.put_many(self.name, source, target, list(zip(missing, fresh, strict=True)))
            found.update(zip(missing, fresh, strict=True))
        return [found[text] for text in texts]

    @property
    def cache_hits(self) -> int:
        return self.hits

    def close(self) -> None:
        self.inner.close()
        self.cache.close()
