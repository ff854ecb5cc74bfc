"""PairRanker: a cross-encoder that reads `[source; candidate1; candidate2]` and scores both candidates.

As the original `CrossCompareReranker` (PAPER.md §4a): take the encoder's last hidden states at the
`<|source|>`, `<|candidate1|>` and `<|candidate2|>` tokens; a head (Dropout → Linear 2H→H → Tanh →
Dropout → Linear H→n_tasks) on concat(source, candidate_k) gives candidate k one score per task; the pair
logit is the mean over tasks of s1 − s2 (> 0: candidate1 is better).

PairRanker is a Hugging Face `PreTrainedModel` with its own config class (`PairRankerConfig`, model type
"blender-pairranker", registered with `AutoConfig` / `AutoModel` on import): `save_pretrained` writes
`config.json` (the settings and the backbone's config) + `model.safetensors` + the tokenizer, and
`PairRanker.from_pretrained` / `AutoModel.from_pretrained` read it back by path or hub id; `push_to_hub`
uploads it. Folders written before (`ranker_config.json` + the backbone's `config.json`) still load through
`PairRanker.load`. The released PairRM rankers load as PairRankers too (`blender.rankers.pairrm`), with
their own input format.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from blender.rankers.backbone import encoder_ranker_builder
from blender.rankers.checkpoint import RANKER_CONFIG_FILE, WEIGHTS_FILE, read_checkpoint
from blender.rankers.encoding import PAIR_SPECIAL_TOKENS, EncodedTexts, PairEncoder, add_pair_tokens
from blender.rankers.losses import absolute_target_loss, pairwise_logistic_loss
from blender.rankers.pairrm_encoding import (
    PAIRRM_FORMATS,
    PAIRRM_PREFIX_TOKENS,
    PairRMEncoder,
    add_pairrm_tokens,
)
from blender.rankers.registry import RankerKind, TrainingPlan
from blender.records import Pair, Record, per_signal, sample_pairs, signal_matrix
from blender.records.pairs import PAIR_WEIGHTINGS

log = logging.getLogger(__name__)

POOLINGS = ("marker", "mean")
# "blender": blender's own encoding (`PairEncoder`); "pairrm" / "pairrm_hf": the released PairRM layouts'.
INPUT_FORMATS = ("blender", *PAIRRM_FORMATS)


def position_limit(config) -> int | None:
    """The longest input a backbone's absolute position embeddings cover; None when positions are relative
    (DeBERTa-v2/v3 with `position_biased_input=False`) or the config does not say."""
    if getattr(config, "position_biased_input", True) is False:
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= config.pad_token_id + 1  # RoBERTa's positions start after the padding index
    return limit


def prepare_backbone(backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Add the source/candidate markers to the tokenizer and the backbone's embeddings, and drop its pooler."""
    if add_pair_tokens(tokenizer):
        # New rows start at the mean of the old embeddings (transformers' default), not at noise.
        backbone.resize_token_embeddings(len(tokenizer))
    drop_pooler(backbone)


def drop_pooler(backbone: PreTrainedModel) -> None:
    if getattr(backbone, "pooler", None) is not None:
        # Scores are read at our own positions through our own head; the [CLS] pooler would never train.
        backbone.pooler = None


def marker_tokens(input_format: str) -> tuple[str, str, str]:
    """The source, candidate1 and candidate2 marker tokens of an input format."""
    return PAIR_SPECIAL_TOKENS if input_format == "blender" else PAIRRM_PREFIX_TOKENS[:3]


class PairRankerConfig(PretrainedConfig):
    """A PairRanker's settings and its backbone's config (`config.json` of a saved ranker).

    Args:
        backbone_config: the encoder's config (a `PretrainedConfig` or its dict, with `model_type`).
        task_names: one output per training signal.
        dropout: dropout in the head.
        source_max_length / candidate_max_length: the budgets in tokens (see `PairEncoder`, `PairRMEncoder`).
        truncation, length_hint: blender's encoding options (see `PairEncoder`).
        pooling: "marker" or "mean" (see `PairRanker`).
        input_format: "blender", or "pairrm" / "pairrm_hf" for the released PairRM layouts' input building.
        head_bias: whether the head's last Linear has a bias (PairRM's does; blender's does not).
        marker_token_ids: the ids of the source, candidate1 and candidate2 markers.
    """

    model_type = "blender-pairranker"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict | None = None,
        task_names: Sequence[str] = ("quality",),
        dropout: float = 0.05,
        source_max_length: int = 64,
        candidate_max_length: int = 224,
        truncation: str = "head",
        length_hint: bool = False,
        pooling: str = "mean",
        input_format: str = "blender",
        head_bias: bool = False,
        marker_token_ids: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(backbone_config, dict):
            settings = dict(backbone_config)
            backbone_config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        self.backbone_config = backbone_config
        self.task_names = list(task_names)
        self.dropout = dropout
        self.source_max_length = source_max_length
        self.candidate_max_length = candidate_max_length
        self.truncation = truncation
        self.length_hint = length_hint
        self.pooling = pooling
        self.input_format = input_format
        self.head_bias = head_bias
        self.marker_token_ids = list(marker_token_ids) if marker_token_ids is not None else None
        super().__init__(**kwargs)

    def settings(self) -> dict[str, Any]:
        """The PairRanker keyword arguments these settings stand for."""
        return {
            "task_names": list(self.task_names),
            "dropout": self.dropout,
            "source_max_length": self.source_max_length,
            "candidate_max_length": self.candidate_max_length,
            "truncation": self.truncation,
            "length_hint": self.length_hint,
            "pooling": self.pooling,
            "input_format": self.input_format,
            "head_bias": self.head_bias,
        }


class PairRanker(PreTrainedModel):
    """The pairwise cross-encoder.

    Built two ways: `PairRanker(backbone, tokenizer, task_names=..., ...)` around an encoder (training,
    `ranker=pairranker` in config), or `PairRanker(config)` / `PairRanker.from_pretrained(path_or_hub_id)`
    from a `PairRankerConfig` (Hugging Face's way; the tokenizer is then attached with `attach_tokenizer`).

    Args:
        backbone: any Hugging Face encoder returning `last_hidden_state`, or a `PairRankerConfig`.
        tokenizer: its tokenizer; the marker tokens are added (unless present) and the embeddings resized.
        task_names: one output per training signal (paper: ["bartscore"]).
        dropout: dropout in the head (paper: 0.05).
        source_max_length: source budget in tokens (paper: 128; the offline default 64).
        candidate_max_length: budget of each candidate (paper: 128; the offline default 224, so an answer's
            length shows: docs/results/pairranker.md).
        truncation: how long candidates are cut ("head" as the paper, or "head_tail").
        length_hint: start each candidate part with "(N words)", its whole length (not in the paper; see
            `PairEncoder`).
        pooling: what the head reads for each part: "marker" (the paper: the hidden state at its marker
            token) or "mean" (the offline default: the mean hidden state over the part, marker included, the
            pooling sentence-embedding encoders such as all-MiniLM-L6-v2 were trained with; not in the paper).
        input_format: "blender" (blender's `PairEncoder`: fixed per-part budgets, markers as special tokens)
            or "pairrm" / "pairrm_hf" (the released PairRM layouts' `PairRMEncoder`).
        head_bias: give the head's last Linear a bias. It cancels in s1 − s2, so it can never learn (blender's
            head has none); PairRM's checkpoints carry one, kept so they load and save whole.
    """

    config_class = PairRankerConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    label = "PairRanker"

    def __init__(
        self,
        backbone: PreTrainedModel | PairRankerConfig,
        tokenizer: PreTrainedTokenizerBase | None = None,
        task_names: Sequence[str] = ("quality",),
        dropout: float = 0.05,
        source_max_length: int = 64,
        candidate_max_length: int = 224,
        truncation: str = "head",
        length_hint: bool = False,
        pooling: str = "mean",
        input_format: str = "blender",
        head_bias: bool = False,
    ) -> None:
        built_here = not isinstance(backbone, PairRankerConfig)
        if built_here:
            config = self._prepare(
                backbone,
                tokenizer,
                task_names=task_names,
                dropout=dropout,
                source_max_length=source_max_length,
                candidate_max_length=candidate_max_length,
                truncation=truncation,
                length_hint=length_hint,
                pooling=pooling,
                input_format=input_format,
                head_bias=head_bias,
            )
        else:  # the Hugging Face path: from_pretrained / from_config build the encoder from its config
            config = backbone
            backbone = AutoModel.from_config(config.backbone_config)
            drop_pooler(backbone)
        super().__init__(config)
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(2 * hidden, hidden),
            nn.Tanh(),
            nn.Dropout(config.dropout),
            # No bias by default: it would cancel in s1 − s2, so it could never learn.
            nn.Linear(hidden, len(config.task_names), bias=config.head_bias),
        )
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.encoder: PairEncoder | PairRMEncoder | None = None
        if tokenizer is not None:
            self.attach_tokenizer(tokenizer)
        if built_here:
            # The encoder arrives initialised (pretrained, or from its own config) and the head has torch's
            # default init; marked so `post_init` re-initialises nothing (and draws no random numbers).
            for module in self.modules():
                module._is_hf_initialized = True
        self.post_init()

    @staticmethod
    def _prepare(
        backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, **settings: Any
    ) -> PairRankerConfig:
        """Check the settings, add the markers to tokenizer and embeddings, and return the config."""
        if tokenizer is None:
            raise ValueError("PairRanker(backbone, tokenizer, ...) needs the backbone's tokenizer")
        if settings["pooling"] not in POOLINGS:
            raise ValueError(f"ranker.pooling={settings['pooling']!r} is not one of {POOLINGS}")
        if not settings["task_names"]:
            raise ValueError("PairRanker needs at least one task (training signal)")
        input_format = settings["input_format"]
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"ranker.input_format={input_format!r} is not one of {INPUT_FORMATS}")
        if input_format == "blender":
            prepare_backbone(backbone, tokenizer)
        else:
            if settings["truncation"] != "head" or settings["length_hint"]:
                raise ValueError(
                    f"input_format={input_format!r} has its own truncation: truncation must be "
                    "'head' and length_hint false"
                )
            add_pairrm_tokens(tokenizer)
            if backbone.get_input_embeddings().weight.shape[0] != len(tokenizer):
                # As `load_ranker` in llm-blender: the embeddings take the tokenizer's size, shrinking when the
                # backbone's vocab_size is larger (deberta-v3-large: 128100 rows -> 128005).
                backbone.resize_token_embeddings(len(tokenizer))
            drop_pooler(backbone)
        source_max_length, candidate_max_length = (
            settings["source_max_length"],
            settings["candidate_max_length"],
        )
        needed = source_max_length + 2 * candidate_max_length
        limit = position_limit(backbone.config)
        if limit is not None and needed > limit:
            # Caught here, not as a shape error deep in the first forward pass.
            raise ValueError(
                f"source_max_length + 2 × candidate_max_length = {source_max_length} + 2 × {candidate_max_length} "
                f"= {needed} tokens, but the backbone ({backbone.config.model_type}) has {limit} positions: "
                f"lower the budgets (e.g. ranker.candidate_max_length={(limit - source_max_length) // 2})"
            )
        markers = tokenizer.convert_tokens_to_ids(list(marker_tokens(input_format)))
        return PairRankerConfig(backbone_config=backbone.config, marker_token_ids=markers, **settings)

    def attach_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Give the ranker its tokenizer (and so its encoder), checking it holds the markers at the config's ids."""
        config = self.config
        markers = tokenizer.convert_tokens_to_ids(list(marker_tokens(config.input_format)))
        if config.marker_token_ids is not None and list(markers) != list(config.marker_token_ids):
            raise ValueError(
                f"the tokenizer has the markers {marker_tokens(config.input_format)} at ids {markers}, but the "
                f"ranker was trained with them at {config.marker_token_ids}: not this ranker's tokenizer"
            )
        if config.input_format == "blender":
            encoder = PairEncoder(
                tokenizer,
                config.source_max_length,
                config.candidate_max_length,
                config.truncation,
                config.length_hint,
            )
        else:
            encoder = PairRMEncoder(
                tokenizer,
                config.source_max_length,
                config.candidate_max_length,
                replace_sep=PAIRRM_FORMATS[config.input_format],
            )
        self.tokenizer, self.encoder = tokenizer, encoder

    def _init_weights(self, module: nn.Module) -> None:
        # Only reached for weights a checkpoint lacks (or `AutoModel.from_config`): torch's own Linear init,
        # as a PairRanker built around an encoder gets. The backbone's modules use the backbone's own init.
        if isinstance(module, nn.Linear):
            module.reset_parameters()

    @property
    def task_names(self) -> list[str]:
        return list(self.config.task_names)

    @property
    def n_tasks(self) -> int:
        return len(self.config.task_names)

    @property
    def dropout(self) -> float:
        return self.config.dropout

    @property
    def pooling(self) -> str:
        return self.config.pooling

    @property
    def input_format(self) -> str:
        return self.config.input_format

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Score both candidates of each pair.

        Args:
            input_ids: [batch, length] ids from the ranker's encoder, each row holding each marker once.
            attention_mask: [batch, length].
        Returns:
            (s1, s2): [batch, n_tasks] scores of candidate1 and candidate2.
        """
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        markers = self.config.marker_token_ids
        if self.config.pooling == "mean":
            # Part k runs from its marker to the next one (the tokenizer's wrapping tokens in between
            # count with the part before); padding counts with none.
            is_marker = sum(input_ids == marker for marker in markers)
            part = torch.cumsum(is_marker, dim=1) * attention_mask
            parts = [(part == k).unsqueeze(-1).to(hidden.dtype) for k in (1, 2, 3)]
            source, first, second = ((hidden * mask).sum(1) / mask.sum(1) for mask in parts)
        else:
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            # argmax finds the first (and only) position of the marker in each row.
            source, first, second = (hidden[rows, (input_ids == m).int().argmax(dim=1)] for m in markers)
        scores_first = self.head(torch.cat([source, first], dim=-1))
        scores_second = self.head(torch.cat([source, second], dim=-1))
        return scores_first, scores_second

    def pair_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[batch] logits, mean over tasks of s1 − s2; > 0 when candidate1 is judged better."""
        scores_first, scores_second = self(input_ids, attention_mask)
        return (scores_first - scores_second).mean(dim=-1)

    def settings(self) -> dict:
        return self.config.settings()

    def save(self, directory: str | os.PathLike) -> None:
        """Write a loadable checkpoint to `directory` (`save_pretrained`: config, weights and tokenizer)."""
        self.save_pretrained(directory)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus the tokenizer (the ranker's encoding needs it)."""
        push_to_hub = kwargs.pop("push_to_hub", False)
        super().save_pretrained(save_directory, **kwargs)
        if self.tokenizer is not None and kwargs.get("is_main_process", True):
            self.tokenizer.save_pretrained(save_directory)
        if push_to_hub:
            # After the tokenizer is written, so the upload carries it (push_to_hub saves afresh, through here).
            hub_keys = ("repo_id", "commit_message", "private", "token", "create_pr", "revision")
            self.push_to_hub(
                kwargs.get("repo_id", Path(save_directory).name),
                **{k: v for k, v in kwargs.items() if k in hub_keys and k != "repo_id"},
            )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
    ) -> PairRanker:
        """Load a ranker saved with `save_pretrained` (a folder or a hub id), tokenizer included.

        Keyword arguments go to `PreTrainedModel.from_pretrained`; `tokenizer=` gives the tokenizer instead of
        reading it from the same place.
        """
        tokenizer = kwargs.pop("tokenizer", None)
        hub_keys = ("cache_dir", "revision", "token", "local_files_only", "subfolder", "force_download")
        hub = {k: kwargs[k] for k in hub_keys if k in kwargs}
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if tokenizer is None:
            try:
                tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **hub)
            except (OSError, ValueError) as error:
                log.warning(
                    "%s: no tokenizer (%s); attach one with attach_tokenizer before scoring texts",
                    pretrained_model_name_or_path,
                    error,
                )
        if tokenizer is not None:
            model.attach_tokenizer(tokenizer)
        return model

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> PairRanker:
        """Rebuild a ranker from a folder written by `save` / `save_pretrained`, by blender before PairRanker
        was a `PreTrainedModel` (`ranker_config.json` beside the backbone's `config.json`), or of a released
        PairRM layout."""
        directory = Path(directory)
        if not (directory / RANKER_CONFIG_FILE).is_file():
            config_file = directory / "config.json"
            if not config_file.is_file():
                raise FileNotFoundError(
                    f"{directory}: not a ranker checkpoint (no config.json or {RANKER_CONFIG_FILE})"
                )
            if json.loads(config_file.read_text()).get("model_type") != PairRankerConfig.model_type:
                # Another layout (a released PairRM): the loader that knows them all, imported here because
                # it imports this module.
                from blender.rankers.registry import load_ranker

                return load_ranker(directory, map_location=map_location)
            return cls.from_pretrained(directory).to(map_location).eval()
        settings, backbone, tokenizer = read_checkpoint(directory, "pairranker")
        # Folders written before pooling was a setting read the marker, as the paper.
        settings.setdefault("pooling", "marker")
        ranker = cls(backbone, tokenizer, **settings)
        load_model(ranker, str(directory / WEIGHTS_FILE), device=map_location)
        return ranker.eval()


AutoConfig.register(PairRankerConfig.model_type, PairRankerConfig)
AutoModel.register(PairRankerConfig, PairRanker)


# ---- training: the pairs of an epoch and their loss -------------------------------------------------------


@dataclass
class PairSampling:
    """How training pairs are drawn (`ranker.sampling` in config).

    Attributes:
        pairs_per_example: pairs per instruction per epoch (paper: 5).
        signal_transform: "none", "logit" or "rank" (see `signal_matrix`), or {signal: name}.
        min_delta: signal differences at or below this are ties (no loss); or {signal: threshold} (see
            `per_signal`), since signals trained on together live on different scales.
        skip_ties: do not spend forward passes on pairs tied on every task.
        weighting: "uniform" (paper), "top" (favour pairs that involve the instruction's best answers) or
            "contested" (favour pairs of two strong answers).
        absolute_weight: weight of an absolute-target term added to the pairwise loss: BCE of each
            candidate's score against its untransformed signal, which must then lie in [0, 1] (gpt4_pref
            does). 0 (the paper) trains on sign(Δ) alone. See `absolute_target_loss`.
    """

    pairs_per_example: int = 5
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.1
    skip_ties: bool = True
    weighting: str = "uniform"
    absolute_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.absolute_weight >= 0:
            raise ValueError(
                f"ranker.sampling.absolute_weight={self.absolute_weight!r}; it must be 0 or more"
            )
        if self.weighting not in PAIR_WEIGHTINGS:  # caught with the config, not at the first epoch
            raise ValueError(
                f"ranker.sampling.weighting={self.weighting!r}; choose one of {', '.join(PAIR_WEIGHTINGS)}"
            )


class PairBatches(Sequence):
    """One epoch's micro-batches: pairs grouped by length (less padding), collated on access."""

    def __init__(
        self,
        ranker: PairRanker,
        encoded: Sequence[EncodedTexts],
        pairs: Sequence[Pair],
        batch_size: int,
        seed: int,
        absolute: Sequence[np.ndarray] | None = None,
    ):
        """`absolute`: per record, its [n_candidates, n_tasks] absolute targets; each batch then carries
        `absolute_first` and `absolute_second` for `absolute_target_loss`."""
        rng = np.random.default_rng(seed)
        self.ranker, self.encoded, self.absolute = ranker, encoded, absolute
        sequences = [ranker.encoder.pair_ids(encoded[p.record_index], p.first, p.second) for p in pairs]
        order = rng.permutation(len(pairs))
        # HF's group_by_length: sort inside random mega-batches, then shuffle the batches.
        mega = batch_size * 16
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda k: len(sequences[k]))
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        self.batches = [batches[k] for k in rng.permutation(len(batches))]
        self.sequences, self.pairs = sequences, pairs

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        batch = self.ranker.encoder.pad([self.sequences[k] for k in rows])
        pairs = [self.pairs[k] for k in rows]
        batch["targets"] = torch.tensor([p.targets for p in pairs], dtype=torch.float32)
        if self.absolute is not None:
            for key, member in (("absolute_first", "first"), ("absolute_second", "second")):
                values = np.stack([self.absolute[p.record_index][getattr(p, member)] for p in pairs])
                batch[key] = torch.as_tensor(values, dtype=torch.float32)
        return batch


def pair_loss(
    model: PairRanker, batch: dict[str, Tensor], absolute_weight: float = 0.0
) -> tuple[Tensor, dict[str, float]]:
    """The pairwise logistic loss of a batch (plus `absolute_weight` × the absolute-target term), and the
    share of decisive pairs ordered right."""
    scores_first, scores_second = model(batch["input_ids"], batch["attention_mask"])
    targets = batch["targets"]
    loss = pairwise_logistic_loss(scores_first, scores_second, targets)
    decisive = targets != 0
    correct = ((scores_first - scores_second) * targets > 0)[decisive].float()
    logged = {"pair_accuracy": correct.mean().item() if correct.numel() else float("nan")}
    if absolute_weight:
        absolute = absolute_target_loss(
            torch.cat([scores_first, scores_second]).float(),
            torch.cat([batch["absolute_first"], batch["absolute_second"]]),
        )
        loss = loss + absolute_weight * absolute
        logged["absolute_loss"] = absolute.item()
    return loss, logged


def absolute_targets(records: Sequence[Record], signals: Sequence[str]) -> list[np.ndarray]:
    """Per record, its candidates' untransformed signals, checked to be probabilities (for the BCE)."""
    targets = [signal_matrix(r, signals, "none") for r in records]
    for record, values in zip(records, targets, strict=True):
        outside = (values < 0) | (values > 1) | np.isnan(values)
        if outside.any():
            i, t = np.argwhere(outside)[0]
            raise ValueError(
                f"ranker.sampling.absolute_weight needs signals in [0, 1]: record {record.id!r}, candidate "
                f"{record.candidates[i].model!r} has {signals[t]}={values[i, t]}; set absolute_weight=0 for "
                "this signal"
            )
    return targets


def prepare_pair_training(
    ranker: PairRanker,
    records: Sequence[Record],
    signals: Sequence[str],
    sampling: PairSampling,
    batch_size: int,
    seed: int,
) -> TrainingPlan:
    """Each epoch draws `sampling.pairs_per_example` pairs per instruction anew (seeded by seed + epoch)."""
    signal_by_record = [signal_matrix(r, signals, sampling.signal_transform) for r in records]
    min_delta = per_signal(sampling.min_delta, signals, "min_delta")
    encoded = [ranker.encoder.encode_record_texts(r.source, [c.text for c in r.candidates]) for r in records]
    absolute = absolute_targets(records, signals) if sampling.absolute_weight else None
    cache: dict[int, PairBatches] = {}

    def epoch_batches(epoch: int) -> PairBatches:
        # The loop asks for an epoch's batches more than once (counting steps, resuming): build each once.
        if epoch not in cache:
            cache.clear()
            rng = np.random.default_rng(seed + epoch)
            pairs = sample_pairs(
                signal_by_record,
                sampling.pairs_per_example,
                rng,
                min_delta,
                sampling.skip_ties,
                sampling.weighting,
            )
            cache[epoch] = PairBatches(
                ranker, encoded, pairs, batch_size, seed=seed + epoch, absolute=absolute
            )
        return cache[epoch]

    first = epoch_batches(0)
    n_decisive = sum(any(t != 0 for t in pair.targets) for pair in first.pairs)
    return TrainingPlan(
        epoch_batches,
        lambda model, batch: pair_loss(model, batch, sampling.absolute_weight),
        f"{len(first.pairs)} training pairs per epoch ({n_decisive} decisive) in {len(first)} batches of "
        f"{batch_size}",
    )


KIND = RankerKind(
    name="pairranker",
    model=PairRanker,
    build=encoder_ranker_builder(PairRanker),
    pairwise=True,
    sampling=PairSampling,
    prepare_training=prepare_pair_training,
    new_parameter_prefixes=("head.",),
)
