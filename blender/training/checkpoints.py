"""A run folder's resumable checkpoints, the settings they were trained under, and who may write the folder.

Checkpoints: `checkpoints/step-<n>/` folders and `checkpoints/latest`, a one-line file naming the newest complete
one. A checkpoint is written under a temporary name, renamed whole, and only then named by `latest` (an atomic
write); older folders go last. A kill at any point leaves `latest` naming a complete folder, or no folder newer
than it, so a resumed run always starts from the newest complete checkpoint.

Fingerprint: `run_fingerprint.json` holds the settings that shape the run (training, model and data settings,
the data files' digests, the number of processes). Resuming under other settings is refused, naming the keys
that differ, unless asked for on purpose (`trainer.resume=force`).

Lock: one process at a time writes a run folder (`.lock`, an flock held for the run), so two runs with the same
run id cannot interleave their checkpoints and `metrics.jsonl`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from blender.files import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LATEST = "latest"
FINGERPRINT_FILE = "run_fingerprint.json"
LOCK_FILE = ".lock"
STEP_DIR = re.compile(r"^step-(\d+)$")

# Called with an event name at each point of a checkpoint swap ("written", "renamed", "pointed", "cleaned");
# tests replace it to stop a run there, as a kill would.
CheckpointHook = Callable[[str], None]


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked: busy, or holding a run of other settings. Says what to do."""


def _complete(folder: Path, state_file: str) -> bool:
    return (folder / state_file).is_file()


def latest_checkpoint(output_dir: str | os.PathLike, state_file: str = "trainer_state.json") -> Path | None:
    """The newest complete checkpoint of a run folder, or None.

    `latest` names it; a folder of a later step that is complete also counts (a kill after its rename, before
    `latest` moved). A run written before this layout resumes from its `checkpoints/last`.
    """
    root = Path(output_dir) / CHECKPOINTS
    candidates = []
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if _complete(named, state_file):
            candidates.append(named)
    if root.is_dir():
        candidates += [p for p in root.iterdir() if STEP_DIR.match(p.name) and _complete(p, state_file)]
    if candidates:
        return max(
            candidates, key=lambda p: int(STEP_DIR.match(p.name).group(1)) if STEP_DIR.match(p.name) else -1
        )
    legacy = root / "last"
    return legacy if _complete(legacy, state_file) else None


def pending_checkpoint(output_dir: str | os.PathLike, step: int) -> Path:
    """The temporary folder a checkpoint of `step` is written into (by every process) before `publish_checkpoint`."""
    return Path(output_dir) / CHECKPOINTS / f".step-{step:08d}.tmp"


def publish_checkpoint(output_dir: str | os.PathLike, step: int, hook: CheckpointHook | None = None) -> Path:
    """Rename the written checkpoint of `step` into place, make it the latest, then remove the older ones."""
    hook = hook or (lambda event: None)
    root = Path(output_dir) / CHECKPOINTS
    tmp, final = pending_checkpoint(output_dir, step), root / f"step-{step:08d}"
    hook("written")
    if final.exists():  # the same step saved again (after validation): the new copy replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    hook("renamed")
    write_text_atomic(root / LATEST, final.name + "\n")
    hook("pointed")
    for other in root.iterdir():
        stale = STEP_DIR.match(other.name) or other.name in ("last", "last.old")
        if other != final and other.name != LATEST and stale:
            shutil.rmtree(other, ignore_errors=True)
    hook("cleaned")
    return final


def flatten_settings(sections: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one flat {"trainer.lr": 5e-05, ...} dict, so a changed setting is named by its key."""
    flat: dict[str, Any] = {}
    for key, value in sections.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_fingerprint(
    output_dir: str | os.PathLike, fingerprint: dict[str, Any], resuming: bool, force: bool
) -> None:
    """Record the run's fingerprint, or compare it with the one recorded when the run folder was first trained.

    Raises:
        RunFolderError: resuming (or re-running a finished run) under other settings, without `force`.
    """
    path = Path(output_dir) / FINGERPRINT_FILE
    current = json.loads(json.dumps(fingerprint, default=str))  # the same types a reread gives
    if resuming and path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = None
        if saved is None:
            log.warning("%s is unreadable: resuming without checking what changed", path)
        else:
            differ = sorted(
                k for k in set(saved) | set(current) if saved.get(k, "<absent>") != current.get(k, "<absent>")
            )
            if differ and not force:
                shown = "; ".join(
                    f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
                    for k in differ[:12]
                )
                raise RunFolderError(
                    f"{Path(output_dir)} holds a run trained under other settings ({len(differ)} differ: {shown}). "
                    "Start a new run (another run_id), or continue this one on purpose with trainer.resume=force"
                )
            if differ:
                log.warning(
                    "resuming %s under changed settings on purpose (trainer.resume=force): %s",
                    output_dir,
                    ", ".join(differ),
                )
    write_json_atomic(path, current)


@contextlib.contextmanager
def run_folder_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the run folder for this process; a second run of the same folder fails at once, naming the holder."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderError(
                f"{folder} is in use by {holder}: wait for it to finish, or start this run under another run_id"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def keep_metrics_up_to(metrics_file: Path, step: int) -> None:
    """Drop the rows a killed run logged after its last checkpoint, so a resumed run logs each step once."""
    if not metrics_file.is_file():
        return
    rows = [line for line in metrics_file.read_text().splitlines() if line.strip()]
    kept = []
    for line in rows:
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:  # a line torn by the kill
            continue
    if len(kept) != len(rows):
        log.info(
            "%s: %d rows after step %d dropped (logged after the checkpoint the run resumes from)",
            metrics_file,
            len(rows) - len(kept),
            step,
        )
        write_text_atomic(metrics_file, "".join(line + "\n" for line in kept))
