"""The judge's answers on disk, so that a rerun or a restart after a crash pays for no call twice.

A SQLite file in WAL mode with `synchronous=FULL`: each answer is its own committed, fsynced transaction
written as soon as it arrives, so a crash loses nothing already paid for; SQLite's locking makes one file
safe for the judge's threads (one connection behind a lock) and for several processes at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    label TEXT NOT NULL,
    answer TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


class JudgeCache:
    """Parsed judge labels keyed by a hash of the request body (model, messages, sampling settings).

    Args:
        path: the SQLite file; its folder is created if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): every INSERT commits on its own, at once.
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Labels already on disk.

        Args:
            keys: request keys.
        Returns:
            {key: label} for the keys found.
        """
        found: dict[str, str] = {}
        with self._lock:
            for key in keys:
                row = self._conn.execute("SELECT label FROM answers WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    found[key] = row[0]
        return found

    def put(
        self, key: str, *, model: str, label: str, answer: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Store one parsed answer durably before returning.

        Args:
            key: the request key.
            model: the judge model that answered.
            label: the parsed label, one of `CMP_LABELS`.
            answer: the raw answer text, kept for audits.
            prompt_tokens: tokens billed for the prompt.
            completion_tokens: tokens billed for the answer.
        """
        with self._lock:
            # OR IGNORE: another process may have stored the same request first; the first answer stays.
            self._conn.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, label, answer, prompt_tokens, completion_tokens, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
