"""What every reference metric shares: the `ReferenceMetric` protocol, device and checkpoint resolution, the
load error that says how to provide a checkpoint locally, and `build_metrics` for a config's metric set.

A metric set is a dict of `{name: {_target_: ..., ...}}` (`conf/metrics/offline.yaml`, `conf/metrics/paper.yaml`),
so `~metrics.bleurt` drops one and `metrics.bertscore.batch_size=8` tunes one.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from hydra.errors import InstantiationException
from hydra.utils import instantiate

log = logging.getLogger(__name__)


@runtime_checkable
class ReferenceMetric(Protocol):
    """A metric that scores each candidate against its reference; higher is better."""

    name: str

    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        """Score aligned pairs.

        Args:
            candidates: n candidate texts.
            references: n reference texts; `references[i]` is the reference of `candidates[i]`.
        Returns:
            n scores, one per (candidate, reference) pair.
        """
        ...


class MetricLoadError(OSError):
    """A metric's checkpoint that cannot be loaded; the message names it and how to provide it locally."""


def checkpoint_error(metric: str, checkpoint: str, config_key: str, error: Exception) -> MetricLoadError:
    """Build the one error every metric raises when its weights cannot be loaded.

    Args:
        metric: display name, e.g. "BLEURT".
        checkpoint: the hub id or folder that failed.
        config_key: the config key that points at the checkpoint, e.g. "metrics.bleurt.checkpoint".
        error: what `from_pretrained` raised.
    Returns:
        The error to raise (chain it with `from error`).
    """
    return MetricLoadError(
        f"could not load {metric} checkpoint {checkpoint!r} ({type(error).__name__}: {str(error).splitlines()[0]}). "
        f"Without hub access, download it where the hub is reachable "
        f"(`huggingface-cli download {checkpoint} --local-dir DIR`), copy DIR here and set {config_key}=DIR "
        f"(HF_HUB_OFFLINE=1 skips the download retries)"
    )


def require(module: str, package: str, metric: str) -> ModuleType:
    """Import an optional dependency, or fail naming the package that provides it.

    Args:
        module: the import name, e.g. "bert_score".
        package: the PyPI requirement to install, e.g. "bert-score>=0.3.13".
        metric: the metric that needs it, for the message.
    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{metric} needs the {package.split('>')[0]!r} package: pip install '{package}'"
        ) from error


def check_pairs(candidates: list[str], references: list[str]) -> None:
    """Fail unless candidates and references are aligned lists of strings."""
    if len(candidates) != len(references):
        raise ValueError(
            f"{len(candidates)} candidates but {len(references)} references: give one reference per candidate"
        )
    for what, texts in (("candidate", candidates), ("reference", references)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{what} {i} is a {type(text).__name__}, not a str")


def build_metrics(metric_set: Mapping[str, Any]) -> dict[str, ReferenceMetric]:
    """Instantiate a metric set from config.

    Args:
        metric_set: `{name: {_target_: ..., ...}}`, e.g. `cfg.metrics` composed from `conf/metrics/offline.yaml`.
            Each metric gets its key as `name`, so error messages point at `metrics.<name>.*`.
    Returns:
        `{name: metric}` in config order.
    Raises:
        MetricLoadError: one error naming every metric whose checkpoint could not be loaded, and how to
            point each at a local copy.
    """
    metrics: dict[str, ReferenceMetric] = {}
    failures: list[MetricLoadError] = []
    for name, node in metric_set.items():
        if node is None:  # `metrics.bleurt=null` also drops one
            continue
        try:
            metric = instantiate(node, name=name)
        except InstantiationException as error:
            # Hydra wraps the constructor's error in its own; a missing checkpoint's message (which one, how to
            # provide it) should reach the user as it is, not inside a repr.
            if isinstance(error.__cause__, MetricLoadError):
                # Try the others too, so one run names every checkpoint that is missing, not just the first.
                failures.append(MetricLoadError(f"metrics.{name}: {error.__cause__}"))
                failures[-1].__cause__ = error.__cause__
                continue
            raise
        if not isinstance(metric, ReferenceMetric):
            raise TypeError(
                f"metrics.{name}: {type(metric).__name__} has no `name` and `score(candidates, references)`"
            )
        metrics[name] = metric
        log.info("built metric %s (%s)", name, type(metric).__name__)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise MetricLoadError(
            f"{len(failures)} metric checkpoints could not be loaded:\n"
            + "\n".join(f"- {f}" for f in failures)
        ) from failures[0]
    return metrics
