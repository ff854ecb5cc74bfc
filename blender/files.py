"""Files a run writes and checks: atomic writes (an output is either absent or complete, never half-written),
JSON Lines, and content digests (what a settings fingerprint or a completion marker compares)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


@functools.cache
def _umask() -> int:
    # Reading the umask means setting it; done once, so threads writing files never see the brief 0.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _default_mode(directory: bool = False) -> int:
    """The mode `open()` / `mkdir()` would give under the umask (mkstemp/mkdtemp use 0600/0700, which
    would leave outputs unreadable to a team on a shared cluster filesystem)."""
    return (0o777 if directory else 0o666) & ~_umask()


def _publish(tmp: str, path: Path) -> Path:
    """Give a complete temporary file the usual mode and rename it over `path`."""
    os.chmod(tmp, _default_mode())
    os.replace(tmp, path)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` (e.g. a PNG) to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=float) + "\n")


def write_dir_atomic(path: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Let `fill` write a folder under a temporary name, then swap it in for `path`.

    A kill during `fill` leaves the previous `path` intact; only the short swap is not atomic, and it
    never leaves `path` half-written: an old copy is moved aside first and removed last.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, _default_mode(directory=True))
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line (gzip when the name ends in `.gz`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # The temp name has no `.gz` suffix, so the codec follows the final name.
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(tmp, "wt", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        return _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def iter_text_lines(
    path: str | os.PathLike, error: type[Exception] = ValueError
) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each line of a file, decoded as strict UTF-8; `.gz` files through gzip.

    Raises:
        error: `path:line: ...` for bytes that are not UTF-8 and for a gzip stream that ends early or is corrupt
            (a file cut short in a copy), instead of a decoder's exception with no file or line.
    """
    path = Path(path)
    line_no = 0
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    yield line_no, raw.decode("utf-8")
                except UnicodeDecodeError as decode_error:
                    at = decode_error.start
                    raise error(
                        f"{path}:{line_no}: not UTF-8 (byte {raw[at]:#04x} at column {at + 1}); re-encode the file "
                        "as UTF-8"
                    ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as stream_error:
        raise error(
            f"{path}:{line_no + 1}: the gzip stream ends early or is corrupt ({type(stream_error).__name__}: "
            f"{stream_error}); the file was cut short or is not gzip: copy it again"
        ) from None


def parse_json_line(line: str, where: str, error: type[Exception] = ValueError) -> Any:
    """One JSON value; what Python's decoder refuses (bad syntax, integers past its digit limit, nesting deeper
    than its recursion limit) becomes one `error` at `where`."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as decode_error:
        raise error(f"{where}: not valid JSON ({decode_error.msg} at column {decode_error.colno})") from None
    except ValueError as value_error:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise error(f"{where}: not valid JSON ({value_error})") from None
    except RecursionError:
        raise error(f"{where}: not valid JSON (nested too deeply to read)") from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line of a `.jsonl` / `.jsonl.gz` file.

    Raises:
        ValueError: `path:line: ...` when a line is not UTF-8, not JSON or not a JSON object.
    """
    for line_no, line in iter_text_lines(path):
        if not line.strip():
            continue
        obj = parse_json_line(line, f"{path}:{line_no}")
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
        yield line_no, obj


def read_jsonl_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every object of a `.jsonl` / `.jsonl.gz` file as a plain dict (see `iter_jsonl`)."""
    return [obj for _, obj in iter_jsonl(path)]


def json_digest(obj: Any) -> str:
    """sha256 of `obj` as canonical JSON (sorted keys; anything JSON cannot write is written as `str`)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()
