"""Files that appear whole or not at all: write to a temp file beside the target, then rename.

A killed run can leave a `*.tmp-*` file behind but never a half-written target, because `os.replace`
within one directory is atomic on POSIX. Readers therefore never need to guess whether a file is whole.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _open_text(path: Path, mode: str):  # noqa: ANN202 - a text file object, gzip or plain
    """Open `path` as text, through gzip when its name ends in `.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def write_bytes_atomic(path: str | Path, write: Any) -> Path:
    """Write a file through a temp file in the same directory, then rename it into place.

    Args:
        path: the final file.
        write: called with the temp path; it writes the whole content there.
    Returns:
        The final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # fsync before the rename so a crash cannot leave the new name pointing at missing data.
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line (gzip when the name ends in `.gz`), atomically.

    Args:
        path: the final `.jsonl` or `.jsonl.gz` file.
        rows: the objects to write.
    Returns:
        The final path.
    """
    path = Path(path)

    def write(tmp: Path) -> None:
        # The temp name has no `.gz` suffix, so choose the codec from the final name.
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(tmp, "wt", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write_bytes_atomic(path, write)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write one JSON document (indented, for people to read), atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    return write_bytes_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Read a `.jsonl` / `.jsonl.gz` file.

    Args:
        path: the file.
    Returns:
        An iterator of (1-based line number, object); blank lines are skipped.
    Raises:
        ValueError: `path:line: ...` when a line is not a JSON object.
    """
    path = Path(path)
    with _open_text(path, "r") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from e
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read every object of a `.jsonl` / `.jsonl.gz` file (see `iter_jsonl`)."""
    return [obj for _, obj in iter_jsonl(path)]
