"""Config resolvers the entry points' configs use, checked when Hydra makes a run's folder (before anything is
written), and registered when an entry point imports this module."""

from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import OmegaConf

from blender.rankers.checkpoint import RANKER_CONFIG_FILE

RUN_ID = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]+$")


def run_id_name(run_id: str) -> str:
    """`${run_id_name:${run_id}}`: the run id, if it is a plain name (`run_id=../../x` would write elsewhere)."""
    if not RUN_ID.match(str(run_id)):
        raise ValueError(
            f"run_id={run_id!r}: a run id must be a name, not a path (letters, digits, '.', '_', '-'; no '/', no '..')"
        )
    return str(run_id)


def eval_dir(checkpoint: str) -> str:
    """`${eval_dir:${checkpoint}}`: `<checkpoint>/../eval`, for a folder that is a ranker checkpoint, so a mistyped
    path creates no `<typo>/best` (which the next `make eval` would take as the newest run)."""
    folder = Path(checkpoint)
    if not (folder / RANKER_CONFIG_FILE).is_file():
        raise ValueError(
            f"checkpoint={checkpoint}: not a ranker checkpoint (no {RANKER_CONFIG_FILE}); give a run's best folder, "
            "e.g. outputs/train_ranker/<run_id>/best"
        )
    return os.path.normpath(folder.parent / "eval")


# `replace`: importing twice (tests) is harmless.
OmegaConf.register_new_resolver("run_id_name", run_id_name, replace=True)
OmegaConf.register_new_resolver("eval_dir", eval_dir, replace=True)
