"""The ranker kinds, by name: one entry says how a kind is built, trained, scored and read back.

Training (`blender.training.rankers`), evaluation (`blender.evaluation`), the comparison of experiments and
`blender.api.Blender` read this one dict and nothing else about a kind. A new ranker is one module that
defines its `RankerKind` and one config file (`conf/ranker/<name>.yaml`, `kind: <name>`): either add the kind to
`RANKERS`, or name it in the config by its import path, `kind: my_package.my_module:KIND`, which registers it
on first use (and the checkpoints it writes record that path, so they load back the same way).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch import Tensor, nn

from blender.rankers.checkpoint import (
    RANKER_CONFIG_FILE,
    CheckpointError,
    checkpoint_folder,
    read_ranker_config,
)
from blender.records import Record

LossFn = Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]


@runtime_checkable
class Ranker(Protocol):
    """What every ranker model offers, besides being an `nn.Module`: its row label and a checkpoint folder.

    A pairwise ranker (`RankerKind.pairwise`) is also read through `blender.rankers.predict` (its `encoder` and
    `pair_logits`); a pointwise one scores each candidate on its own through `score_records`.
    """

    label: str

    def save(self, directory: str | os.PathLike) -> None:
        """Write a checkpoint folder that `load_ranker` reads back."""
        ...


@runtime_checkable
class PointwiseRanker(Ranker, Protocol):
    """A ranker that scores each candidate on its own (SummaReranker, the listwise ranker, SimCLS, MLM-Scoring)."""

    def score_records(self, records: Sequence[Record], settings: Any) -> list[np.ndarray]:
        """Per record, [n_candidates] scores, higher is better."""
        ...

    def forward_passes(self, record: Record) -> int:
        """Encoder forward passes (sequences run) to score one record's candidates."""
        ...


@dataclass
class TrainingPlan:
    """What the training loop needs from a kind for one run.

    Attributes:
        epoch_batches: epoch index -> that epoch's micro-batches (deterministic given the index, so a resumed run
            sees the same data from where it stopped).
        loss: (model, batch) -> (scalar loss, extra logs).
        description: one line for the log (how many pairs or instructions an epoch holds).
    """

    epoch_batches: Callable[[int], Sequence[dict[str, Tensor]]]
    loss: LossFn
    description: str = ""


# (model, training records, signals, sampling settings, micro-batch size, seed) -> the run's plan.
PrepareTraining = Callable[[nn.Module, Sequence[Record], Sequence[str], Any, int, int], TrainingPlan]


@dataclass(frozen=True)
class RankerKind:
    """One kind of ranker.

    Attributes:
        name: `kind:` in `conf/ranker/*.yaml` and `ranker` in each checkpoint's `ranker_config.json`.
        model: the model class; `model.load(directory, map_location)` reads a checkpoint back.
        build: (the ranker config's model settings, the backbone settings, the task names) -> a new model.
        pairwise: True: the model scores pairs and is read through the N×N matrix and an aggregation
            (`blender.rankers.predict`); False: one score per candidate (`score_records`).
        sampling: the settings class of `ranker.sampling` (how training examples are drawn); None when the kind
            has nothing to train (MLM-Scoring scores with the masked LM as it is).
        prepare_training: builds a run's batches and loss (see `PrepareTraining`); None with `sampling`.
        new_parameter_prefixes: parameter-name prefixes of newly initialised layers, trained at `trainer.head_lr`.
    """

    name: str
    model: type
    build: Callable[[dict[str, Any], Any, list[str]], nn.Module]
    pairwise: bool
    sampling: type | None = None
    prepare_training: PrepareTraining | None = None
    new_parameter_prefixes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if (self.sampling is None) != (self.prepare_training is None):
            raise ValueError(
                f"ranker kind {self.name!r}: give both sampling and prepare_training, or neither"
            )

    @property
    def trainable(self) -> bool:
        return self.prepare_training is not None


def _builtin_kinds() -> dict[str, RankerKind]:
    # Imported here, not at the top: each kind's module imports this one for `RankerKind`.
    from blender.rankers import listwise, mlm_scoring, pairranker, simcls, summareranker

    kinds = (pairranker.KIND, summareranker.KIND, listwise.KIND, simcls.KIND, mlm_scoring.KIND)
    return {k.name: k for k in kinds}


RANKERS: dict[str, RankerKind] = {}


def get_kind(name: str) -> RankerKind:
    """The kind named `name`: a key of `RANKERS`, or `package.module:ATTRIBUTE` naming a `RankerKind` elsewhere
    (registered under that path on first use)."""
    if not RANKERS:
        RANKERS.update(_builtin_kinds())
    if name in RANKERS:
        return RANKERS[name]
    if ":" not in name:
        raise ValueError(
            f"ranker kind {name!r} is not one of {sorted(RANKERS)} (or a 'package.module:KIND' import path)"
        )
    module_name, _, attribute = name.partition(":")
    try:
        kind = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"ranker kind {name!r}: cannot import it ({error})") from error
    if not isinstance(kind, RankerKind):
        raise ValueError(f"ranker kind {name!r} is a {type(kind).__name__}, not a RankerKind")
    RANKERS[name] = kind
    return kind


def kind_of(ranker: nn.Module) -> RankerKind:
    """The kind a model belongs to (the first registered kind whose class it is an instance of)."""
    get_kind("pairranker")  # fills RANKERS with the built-in kinds
    for kind in RANKERS.values():
        if isinstance(ranker, kind.model):
            return kind
    raise ValueError(f"{type(ranker).__name__} is no registered ranker kind ({sorted(RANKERS)})")


def ranker_identity(checkpoint: str | os.PathLike) -> tuple[str, bool]:
    """(the ranker's row label, whether it is pairwise) read from its checkpoint's config, without loading it;
    the layouts without `ranker_config.json` (`save_pretrained`, the released PairRM) are PairRanker's."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / RANKER_CONFIG_FILE).is_file():
        return "PairRanker", True
    kind = get_kind(read_ranker_config(checkpoint)["ranker"])
    return getattr(kind.model, "label", kind.name), kind.pairwise


def build_ranker(kind: str, settings: dict[str, Any], backbone: Any, task_names: Sequence[str]) -> nn.Module:
    """A new ranker of `kind` from the ranker config's model settings (everything but `kind` and `sampling`)."""
    return get_kind(kind).build(dict(settings), backbone, list(task_names))


def load_ranker(
    name_or_path: str | os.PathLike, map_location: str = "cpu", backbone: str | None = None
) -> nn.Module:
    """Rebuild the ranker saved in a folder or hub repo, whichever layout it has.

    - `ranker_config.json`: a checkpoint of any registered kind (PairRanker before it was a `PreTrainedModel`,
      SummaReranker, SimCLS, MLM-Scoring, or a kind named by import path), by the kind it names;
    - `config.json` of model type "blender-pairranker": a PairRanker saved with `save_pretrained`;
    - `config.json` of llm-blender's `RankerConfig` (`llm-blender/PairRM`) or of `DebertaV2PairRM`
      (`llm-blender/PairRM-hf`): a released PairRM ranker (`blender.rankers.pairrm`).

    Args:
        name_or_path: the folder, or a hub id such as "llm-blender/PairRM".
        map_location: the device to load onto.
        backbone: for the `llm-blender/PairRM` layout only, where its backbone's tokenizer and config are.
    """
    folder = checkpoint_folder(name_or_path)
    if (folder / RANKER_CONFIG_FILE).is_file():
        return get_kind(read_ranker_config(folder)["ranker"]).model.load(folder, map_location=map_location)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: not a ranker checkpoint (no config.json or {RANKER_CONFIG_FILE})")
    config = json.loads(config_file.read_text())
    # Imported here: both modules import this one (for RankerKind).
    from blender.rankers.pairranker import PairRanker, PairRankerConfig
    from blender.rankers.pairrm import load_pairrm, pairrm_layout

    if config.get("model_type") == PairRankerConfig.model_type:
        return PairRanker.load(folder, map_location=map_location)
    if pairrm_layout(config) is not None:
        return load_pairrm(folder, backbone=backbone, map_location=map_location)
    raise CheckpointError(
        f"{config_file}: not a ranker checkpoint this code reads (model_type {config.get('model_type')!r}); it reads "
        "blender's own (model_type blender-pairranker, or a ranker_config.json) and the released "
        "llm-blender/PairRM and llm-blender/PairRM-hf layouts"
    )


__all__ = [
    "RANKERS",
    "LossFn",
    "PointwiseRanker",
    "Ranker",
    "RankerKind",
    "TrainingPlan",
    "build_ranker",
    "get_kind",
    "kind_of",
    "load_ranker",
    "ranker_identity",
]
