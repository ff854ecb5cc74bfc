"""One set of defaults: every settings dataclass and model constructor agrees with the YAML that configures it by
default, so the Python API and the command line run the same recipe. A test here fails when either side drifts."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from blender.cli.common import to_dict
from blender.evaluation.reporting import EvalSettings, FuseSettings, TableSettings
from blender.fuser.finetuning import FinetuneSettings
from blender.fuser.model import GenerationSettings
from blender.fuser.packing import PackingSettings
from blender.fuser.topk import TopKSettings
from blender.mixinstruct.candidate_models import CandidateGenerationSettings
from blender.mixinstruct.mix import MixSettings
from blender.rankers import (
    ListwiseRanker,
    ListwiseSampling,
    PairRanker,
    PairSampling,
    SimCLS,
    SimCLSSampling,
    SummaReranker,
    SummaRerankerSampling,
    build_mlm_scorer,
)
from blender.rankers.backbone import BackboneSettings
from blender.rankers.mlm_scoring import MLMScorer
from blender.rankers.predict import InferenceSettings
from blender.records import DataSettings
from blender.training.loop import LoggerSettings, TrainSettings
from tests.conftest import compose_config


def defaults_of(target: Any) -> dict[str, Any]:
    """The default of every field of a dataclass, or of every parameter of a function or class constructor."""
    if dataclasses.is_dataclass(target):
        values = {}
        for f in dataclasses.fields(target):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
            else:
                values[f.name] = dataclasses.MISSING
        return values
    signature = inspect.signature(target)
    return {name: p.default for name, p in signature.parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD}


def drift(target: Any, values: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Where `values` (a resolved YAML node) and `target`'s defaults differ, and YAML keys `target` lacks."""
    defaults = defaults_of(target)
    problems = []
    for key, value in values.items():
        if key in ignore or key.startswith("_"):
            continue
        if key not in defaults:
            problems.append(f"{key}: in the YAML, not in {target.__name__}")
        elif defaults[key] is not dataclasses.MISSING and defaults[key] != value:
            problems.append(f"{key}: {target.__name__} says {defaults[key]!r}, the YAML {value!r}")
    return problems


def node(config: str, key: str, *overrides: str) -> dict[str, Any]:
    """A resolved node of a composed primary config (its output folder pinned, so nothing refers to Hydra's)."""
    pinned = ["output_dir=/tmp/unused", *(["checkpoint=/tmp/unused"] if config == "eval" else [])]
    value: Any = compose_config(config, [*overrides, *pinned])
    for part in key.split("."):
        value = value[part]
    return to_dict(value)


def without(values: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in keys}


CASES = {
    "trainer/default.yaml": (TrainSettings, lambda: node("train_ranker", "trainer")),
    "evaluation/default.yaml: inference": (InferenceSettings, lambda: node("train_ranker", "inference")),
    "evaluation/default.yaml: eval": (EvalSettings, lambda: node("train_ranker", "eval")),
    "evaluation/default.yaml: tables": (TableSettings, lambda: node("train_ranker", "tables")),
    "data/alpaca_blend_modern.yaml": (DataSettings, lambda: node("train_ranker", "data")),
    "backbone/minilm.yaml": (BackboneSettings, lambda: node("train_ranker", "backbone")),
    "logger/none.yaml": (LoggerSettings, lambda: node("train_ranker", "logger")),
    "ranker/pairranker.yaml": (
        PairRanker,
        lambda: without(
            node("train_ranker", "ranker", "ranker=pairranker"),
            "kind",
            "sampling",
            "init_from",
            "attention_dropout",
        ),
    ),
    "ranker/pairranker.yaml: sampling": (
        PairSampling,
        lambda: node("train_ranker", "ranker.sampling", "ranker=pairranker"),
    ),
    "ranker/summareranker.yaml": (
        SummaReranker,
        lambda: without(
            node("train_ranker", "ranker", "ranker=summareranker"),
            "kind",
            "sampling",
            "init_from",
            "attention_dropout",
        ),
    ),
    "ranker/summareranker.yaml: sampling": (
        SummaRerankerSampling,
        lambda: node("train_ranker", "ranker.sampling", "ranker=summareranker"),
    ),
    "ranker/listwise.yaml": (
        ListwiseRanker,
        lambda: without(
            node("train_ranker", "ranker", "ranker=listwise"),
            "kind",
            "sampling",
            "init_from",
            "attention_dropout",
        ),
    ),
    "ranker/listwise.yaml: sampling": (
        ListwiseSampling,
        lambda: node("train_ranker", "ranker.sampling", "ranker=listwise"),
    ),
    "ranker/simcls.yaml": (
        SimCLS,
        lambda: without(
            node("train_ranker", "ranker", "ranker=simcls"),
            "kind",
            "sampling",
            "init_from",
            "attention_dropout",
        ),
    ),
    "ranker/simcls.yaml: sampling": (
        SimCLSSampling,
        lambda: node("train_ranker", "ranker.sampling", "ranker=simcls"),
    ),
    "ranker/mlm_scoring.yaml": (
        build_mlm_scorer,  # head; the rest pass through to MLMScorer
        lambda: {"head": node("train_ranker", "ranker", "ranker=mlm_scoring")["head"]},
    ),
    "ranker/mlm_scoring.yaml: scorer": (
        MLMScorer,
        lambda: without(node("train_ranker", "ranker", "ranker=mlm_scoring"), "kind", "head"),
    ),
    "train_fuser.yaml: topk": (TopKSettings, lambda: node("train_fuser", "topk")),
    "the default fuser: packing": (PackingSettings, lambda: node("train_fuser", "fuser.packing")),
    "the default fuser: generation": (GenerationSettings, lambda: node("train_fuser", "fuser.generation")),
    # mode is left out: its default, "full", is what every fuser config without a finetuning block means (Flan-T5,
    # MiniLM, Qwen); the default fuser asks for LoRA in its own block.
    "the default fuser: finetuning": (
        FinetuneSettings,
        lambda: without(node("train_fuser", "fuser.finetuning"), "mode"),
    ),
    "eval.yaml: fuse": (FuseSettings, lambda: node("eval", "fuse")),
    "data_build/mixinstruct.yaml: generation": (
        CandidateGenerationSettings,
        lambda: node("build_data", "data_build.generation"),
    ),
    "data_build/mixinstruct.yaml: mix": (MixSettings, lambda: node("build_data", "data_build.mix")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dataclass_defaults_equal_their_yaml(case):
    target, values = CASES[case]
    assert drift(target, values()) == []


def test_drift_is_caught():
    # The check itself can fail: a changed default and an unknown key are both reported.
    assert drift(TrainSettings, {"lr": 1.0, "learning_rat": 1e-3}) == [
        "lr: TrainSettings says 5e-05, the YAML 1.0",
        "learning_rat: in the YAML, not in TrainSettings",
    ]
