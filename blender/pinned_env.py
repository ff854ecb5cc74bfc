"""A virtual environment holding a pinned set of packages, made on first use and reused after.

The speed benchmark runs the original `llm-blender` beside ours; it does not import under our transformers,
so it gets an environment of its own (`scripts/bench_ranker.py`). The environment is marked complete by a
stamp file written last, atomically, naming the requirements and the base Python it was made for: a folder
without a matching stamp (an install killed halfway, or another pin set) is removed and made again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from blender.files import write_json_atomic

log = logging.getLogger(__name__)

STAMP_FILE = "blender-env.json"


@dataclass(frozen=True)
class PinnedEnv:
    """A ready environment.

    Attributes:
        directory: the venv's folder.
        python: its interpreter.
        created: True when this call made it, False when an earlier one's was reused.
    """

    directory: Path
    python: Path
    created: bool


def env_spec(requirements: Sequence[str], base_python: str | os.PathLike) -> dict:
    """What the stamp records: the requirement strings in order and the base interpreter's version."""
    version = subprocess.run(
        [str(base_python), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {"requirements": list(requirements), "base_python": version}


def venv_python(directory: Path) -> Path:
    return directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(
    directory: str | os.PathLike,
    requirements: Sequence[str],
    base_python: str | os.PathLike | None = None,
    pip_args: Sequence[str] = ("-q",),
) -> PinnedEnv:
    """The environment at `directory` with `requirements` installed: reused when its stamp matches, else made.

    Args:
        directory: where the venv lives (git-ignored, e.g. bench/original-venv).
        requirements: pip requirement strings ("llm-blender==0.0.2"); none makes a bare venv without pip.
        base_python: the interpreter to make it from (default: this one; it must be a real install, not
            another venv's, for `venv` to make a clean one: `sys._base_executable` is used).
        pip_args: extra arguments to `pip install`.
    Returns:
        The environment, with `created` telling whether this call made it.
    """
    directory = Path(directory)
    base_python = Path(base_python or getattr(sys, "_base_executable", sys.executable))
    spec = env_spec(requirements, base_python)
    stamp = directory / STAMP_FILE
    python = venv_python(directory)
    if stamp.is_file() and python.exists():
        try:
            if json.loads(stamp.read_text()) == spec:
                return PinnedEnv(directory, python, created=False)
        except json.JSONDecodeError:
            pass
        log.info("%s was made for other requirements: making it again", directory)
    if directory.exists():
        shutil.rmtree(directory)  # half-made (no stamp) or another pin set
    log.info("making %s with %s", directory, ", ".join(requirements) or "no packages")
    # The base interpreter makes the venv (a venv made from inside another venv would point at it).
    command = [str(base_python), "-m", "venv", str(directory)]
    if not requirements:
        command.append("--without-pip")
    subprocess.run(command, check=True)
    if requirements:
        subprocess.run([str(python), "-m", "pip", "install", *pip_args, *requirements], check=True)
    write_json_atomic(stamp, spec)  # last: the stamp says the environment is complete
    return PinnedEnv(directory, python, created=True)


__all__ = ["STAMP_FILE", "PinnedEnv", "ensure_env", "env_spec"]
