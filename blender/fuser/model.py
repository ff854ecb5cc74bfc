"""GenFuser: a seq2seq model (or a decoder-only LM) that reads the top-K candidates and writes one answer.

Three kinds, chosen by config (`conf/fuser/*.yaml`):
- "seq2seq": any `AutoModelForSeq2SeqLM` (Flan-T5 base/large/XL, the paper's XL);
- "bert2bert": transformers' `EncoderDecoderModel` warm-started from one BERT-style encoder on both sides
  (the packaged MiniLM offline; the decoder's cross-attention starts random), decoding from [CLS] to [SEP];
- "causal": a decoder-only LM; the packed source is the prompt (inside the user turn of its chat template when
  the tokenizer has one: Qwen; as it is for a base model: the packaged Gemma 3 270M), the loss is on the answer
  only, and generation stops at the end-of-answer token appended to every target (or at a stop string).

What training updates (every weight, all but the embedding, LoRA adapters) is `fuser.finetuning`
(`blender.fuser.finetuning`); a LoRA fuser is saved as its adapters plus the name of its base model.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from blender.fuser.finetuning import FinetuneSettings, apply_finetuning, is_peft_model
from blender.fuser.packing import PackingSettings, pack_source, pack_target
from blender.packaged_models import resolve_name_or_path
from blender.rankers.backbone import BackboneLoadError
from blender.rankers.predict import autocast_context, length_sorted_batches

log = logging.getLogger(__name__)

KINDS = ("seq2seq", "bert2bert", "causal")
FUSER_CONFIG_FILE = "fuser_config.json"
IGNORE_INDEX = -100
# License and notice files of a base model, copied into every fuser saved from it (Gemma's terms travel with
# its derivatives).
TERMS_FILES = ("GEMMA_TERMS.html", "NOTICE.md", "LICENSE")


@dataclass
class GenerationSettings:
    """Decoding of fused answers (`fuser.generation`); the defaults are the offline default fuser's
    (conf/fuser/gemma3_270m.yaml: greedy, 384 new tokens, no 10-gram of the answer twice); the original: 4 beams,
    128 new tokens, no sampling.

    Attributes:
        num_beams: beam width (1: greedy).
        max_new_tokens: tokens generated at most.
        batch_size: sources per `generate` call (sorted by length, so a batch pads little).
        no_repeat_ngram_size: forbid repeating n-grams (0: off, as the original). A decoder-only model's
            prompt counts too (transformers' rule), which forbids copying a span of a candidate.
        answer_no_repeat_ngram_size: forbid repeating an n-gram of the answer itself (0: off); the prompt
            does not count, so copying from the candidates stays allowed.
        repetition_penalty: transformers' penalty on tokens already in the prompt or answer (1.0: off).
        stop_strings: an answer ends at the first of these (not kept); a base model that was never trained
            to stop would go on writing the prompt's next part ("Instruction: ...").
        mixed_precision: "no", "bf16" or "fp16" autocast; "auto": bf16 where the device computes it natively.
        show_progress: draw a bar.
    """

    num_beams: int = 1
    max_new_tokens: int = 384
    batch_size: int = 8
    no_repeat_ngram_size: int = 0
    answer_no_repeat_ngram_size: int = 10
    repetition_penalty: float = 1.0
    stop_strings: list[str] = field(default_factory=lambda: list(PROMPT_STOP_STRINGS))
    mixed_precision: str = "auto"
    show_progress: bool = True


# The next part of the fusion prompt's pattern (`blender.fuser.packing`): where a model that did not learn to
# stop (zero-shot) goes on writing.
PROMPT_STOP_STRINGS = ("\n\nInstruction:", "\n\nCandidate ", "\n\nSummarize candidates")


def cut_at_stop_strings(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string ("a\n\nInstruction: b", ["\n\nInstruction:"] -> "a")."""
    cut = min((pos for pos in (text.find(s) for s in stop_strings if s) if pos != -1), default=len(text))
    return text[:cut]


class NoRepeatInAnswer(LogitsProcessor):
    """Bans each token that would repeat an n-gram already in the answer (positions from `prompt_width` on).

    Example (n=2): after the answer "a b c a", "b" is banned ("a b" occurred); the prompt's n-grams are free.
    """

    def __init__(self, n: int, prompt_width: int) -> None:
        self.n, self.prompt_width = n, prompt_width

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        for row, ids in enumerate(input_ids[:, self.prompt_width :].tolist()):
            if len(ids) < self.n:
                continue
            prefix = tuple(ids[len(ids) - self.n + 1 :])
            banned = {
                ids[i + self.n - 1]
                for i in range(len(ids) - self.n + 1)
                if tuple(ids[i : i + self.n - 1]) == prefix
            }
            if banned:
                scores[row, list(banned)] = -float("inf")
        return scores


class StopOnStrings(StoppingCriteria):
    """Ends a sequence once its decoded answer holds a stop string (any tokenizer: the text is decoded, not
    matched token by token as transformers' `stop_strings` does, which needs a SentencePiece/BPE vocabulary).

    Args:
        tokenizer: decodes the answers.
        stop_strings: the strings.
        prompt_width: the (padded) prompt length; for a seq2seq model, 0 (its output is the answer).
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, stop_strings: Sequence[str], prompt_width: int
    ) -> None:
        self.tokenizer, self.stop_strings, self.prompt_width = (
            tokenizer,
            [s for s in stop_strings if s],
            prompt_width,
        )

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs: Any) -> Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop_strings) for t in texts], device=input_ids.device)


def _load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    resolved = resolve_name_or_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as error:
        raise BackboneLoadError(
            f"could not load the fuser tokenizer {resolved!r} ({error}); download it where "
            "the hub is reachable and pass the folder as fuser.tokenizer"
        ) from error


def _special_ids(tokenizer: PreTrainedTokenizerBase, kind: str) -> dict[str, int]:
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = {"eos_token_id": eos, "pad_token_id": pad}
    if kind == "bert2bert":
        ids["decoder_start_token_id"] = tokenizer.cls_token_id
        ids["bos_token_id"] = tokenizer.cls_token_id
    return ids


def _set_special_ids(model: PreTrainedModel, ids: dict[str, int]) -> None:
    for name, value in ids.items():
        setattr(model.config, name, value)
        if model.generation_config is not None:
            setattr(model.generation_config, name, value)


def _build_model(
    kind: str, name_or_path: str | None, config: dict[str, Any] | None, vocab_size: int
) -> PreTrainedModel:
    if config is not None:
        settings = dict(config)
        if kind == "bert2bert":
            encoder = dict(settings.pop("encoder", settings))
            decoder = dict(settings.pop("decoder", encoder))
            parts = []
            for part in (encoder, decoder):
                part.setdefault("vocab_size", vocab_size)
                parts.append(AutoConfig.for_model(part.pop("model_type", "bert"), **part))
            return EncoderDecoderModel(config=EncoderDecoderConfig.from_encoder_decoder_configs(*parts))
        settings.setdefault("vocab_size", vocab_size)
        model_config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
        return auto.from_config(model_config)
    resolved = resolve_name_or_path(name_or_path)
    try:
        if kind == "bert2bert":
            return EncoderDecoderModel.from_encoder_decoder_pretrained(resolved, resolved)
        auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
        # float32 master weights whatever the checkpoint stores (Gemma's cache and Qwen keep bfloat16):
        # training runs under mixed-precision autocast, and AdamW steps on bfloat16 weights would round away.
        return auto.from_pretrained(resolved, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise BackboneLoadError(
            f"could not load the fuser {resolved!r} ({type(error).__name__}: {error}). Without hub access, download "
            f"it where the hub is reachable (`hf download {resolved} --local-dir DIR`) and pass fuser.name_or_path=DIR"
        ) from error


class GenFuser:
    """A fusing model, its tokenizer and how it packs inputs and decodes.

    Args:
        model: the seq2seq or causal LM (`model` is what training updates).
        tokenizer: its tokenizer.
        kind: "seq2seq", "bert2bert" or "causal".
        packing: token budgets and separators.
        generation: decoding settings.
        base: the pretrained model it started from (a packaged name, hub id or folder); a LoRA fuser is
            saved as adapters over it.
        finetuning: what training updates (saved with the fuser).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        kind: str,
        packing: PackingSettings | None = None,
        generation: GenerationSettings | None = None,
        base: str | None = None,
        finetuning: FinetuneSettings | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"fuser.kind={kind!r}; choose one of {list(KINDS)}")
        self.model, self.tokenizer, self.kind = model, tokenizer, kind
        self.packing = packing or PackingSettings()
        self.generation = generation or GenerationSettings()
        self.base = base
        self.finetuning = finetuning or FinetuneSettings()
        if kind == "causal" and tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        _set_special_ids(model, _special_ids(tokenizer, kind))

    @property
    def is_causal(self) -> bool:
        return self.kind == "causal"

    # --- inputs -----------------------------------------------------------------------------------------
    def prompt_ids(self, instruction: str, input_text: str, candidates: Sequence[str]) -> list[int]:
        """The packed source; for a causal LM, inside the user turn of its chat template (when it has one)."""
        ids = pack_source(self.tokenizer, instruction, input_text, candidates, self.packing)
        if not self.is_causal or not getattr(self.tokenizer, "chat_template", None):
            return ids
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        chat = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(chat, add_special_tokens=False)["input_ids"]

    def encode(
        self, instruction: str, input_text: str, candidates: Sequence[str], target: str | None = None
    ) -> dict[str, list[int]]:
        """One example's ids: {"input_ids"} (+ {"labels"} with a target). A causal LM reads prompt + answer
        and its labels ignore the prompt."""
        prompt = self.prompt_ids(instruction, input_text, candidates)
        if target is None:
            return {"input_ids": prompt}
        answer = pack_target(self.tokenizer, target, self.packing)
        if self.is_causal:
            return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}
        return {"input_ids": prompt, "labels": answer}

    def collate(self, examples: Sequence[dict[str, list[int]]], left_pad: bool = False) -> dict[str, Tensor]:
        """Pad a batch: inputs with the pad id (mask 0), labels with −100."""
        pad = self.tokenizer.pad_token_id
        width = max(len(e["input_ids"]) for e in examples)

        def padded(row: list[int], value: int, length: int) -> list[int]:
            fill = [value] * (length - len(row))
            return fill + row if left_pad else row + fill

        batch = {
            "input_ids": torch.tensor([padded(e["input_ids"], pad, width) for e in examples]),
            "attention_mask": torch.tensor([padded([1] * len(e["input_ids"]), 0, width) for e in examples]),
        }
        if "labels" in examples[0]:
            label_width = max(len(e["labels"]) for e in examples)
            batch["labels"] = torch.tensor([padded(e["labels"], IGNORE_INDEX, label_width) for e in examples])
        return batch

    # --- generation -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        instructions: Sequence[str],
        inputs: Sequence[str],
        topk_candidates: Sequence[Sequence[str]],
        settings: GenerationSettings | None = None,
    ) -> list[str]:
        """One fused answer per instruction from its candidates (in the order given: rank order).

        Sources are sorted by length and batched, so a batch pads little; answers come back in input order.
        """
        settings = settings or self.generation
        if not len(instructions) == len(inputs) == len(topk_candidates):
            raise ValueError(
                f"{len(instructions)} instructions, {len(inputs)} inputs, "
                f"{len(topk_candidates)} candidate lists: one each per example"
            )
        prompts = [
            self.prompt_ids(i, x, c) for i, x, c in zip(instructions, inputs, topk_candidates, strict=True)
        ]
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        lengths = [len(p) for p in prompts]
        batches = length_sorted_batches(
            lengths, max_tokens=max(lengths) * settings.batch_size, max_batch_size=settings.batch_size
        )
        answers: list[str] = [""] * len(prompts)
        bar = tqdm(total=len(prompts), desc="fusing", unit="answer", disable=not settings.show_progress)
        with autocast_context(device, settings.mixed_precision):
            for batch in batches:
                inputs_ = self.collate([{"input_ids": prompts[k]} for k in batch], left_pad=self.is_causal)
                width = inputs_["input_ids"].shape[1] if self.is_causal else 0
                stops = (
                    {
                        "stopping_criteria": StoppingCriteriaList(
                            [StopOnStrings(self.tokenizer, settings.stop_strings, width)]
                        )
                    }
                    if settings.stop_strings
                    else {}
                )
                if settings.answer_no_repeat_ngram_size > 0:
                    stops["logits_processor"] = LogitsProcessorList(
                        [NoRepeatInAnswer(settings.answer_no_repeat_ngram_size, width)]
                    )
                out = self.model.generate(
                    input_ids=inputs_["input_ids"].to(device),
                    attention_mask=inputs_["attention_mask"].to(device),
                    num_beams=settings.num_beams,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=False,
                    no_repeat_ngram_size=settings.no_repeat_ngram_size,
                    early_stopping=settings.num_beams > 1,
                    repetition_penalty=settings.repetition_penalty,
                    **stops,
                )
                if self.is_causal:
                    out = out[:, inputs_["input_ids"].shape[1] :]
                for k, text in zip(
                    batch, self.tokenizer.batch_decode(out, skip_special_tokens=True), strict=True
                ):
                    # generate stops after a stop string; the string itself is not part of the answer.
                    answers[k] = cut_at_stop_strings(text, settings.stop_strings).strip()
                bar.update(len(batch))
        bar.close()
        self.model.train(was_training)
        return answers

    # --- files ------------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, model: PreTrainedModel | None = None) -> None:
        """Write weights (a LoRA fuser: its adapters), tokenizer, settings and the base model's terms files to
        `directory` (loadable with `GenFuser.load`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model = model or self.model
        adapters = is_peft_model(model)
        if adapters and self.base is None:
            # No base to name (a model built from a config): save a merged copy instead of the adapters.
            model, adapters = copy.deepcopy(model).merge_and_unload(), False
        model.save_pretrained(directory)  # peft: adapter_config.json + adapter_model.safetensors only
        self.tokenizer.save_pretrained(directory)
        settings = {
            "kind": self.kind,
            "packing": asdict(self.packing),
            "generation": asdict(self.generation),
            "base": self.base,
            "finetuning": asdict(self.finetuning),
            "adapters": adapters,
        }
        (directory / FUSER_CONFIG_FILE).write_text(json.dumps(settings, indent=2))
        if self.base is not None:
            base_dir = Path(resolve_name_or_path(self.base))
            for name in TERMS_FILES:
                if (base_dir / name).is_file():
                    shutil.copyfile(base_dir / name, directory / name)

    @classmethod
    def load(cls, directory: str | os.PathLike, generation: GenerationSettings | None = None) -> GenFuser:
        """Rebuild a fuser saved with `save`; `generation` overrides the saved decoding settings.

        A LoRA fuser's adapters are merged into its base model (resolved by name: "gemma3-270m" from its
        package), so it generates as fast as a plain one.
        """
        directory = Path(directory)
        settings_file = directory / FUSER_CONFIG_FILE
        if not settings_file.is_file():
            raise FileNotFoundError(
                f"{directory}: not a fuser checkpoint (no {FUSER_CONFIG_FILE}); train one "
                "with `make train-fuser`, or fuse zero-shot with fuse.zero_shot=true"
            )
        settings = json.loads(settings_file.read_text())
        kind = settings["kind"]
        loader = {
            "seq2seq": AutoModelForSeq2SeqLM,
            "bert2bert": EncoderDecoderModel,
            "causal": AutoModelForCausalLM,
        }
        if settings.get("adapters"):
            from peft import PeftModel

            base = loader[kind].from_pretrained(resolve_name_or_path(settings["base"]), dtype=torch.float32)
            model = PeftModel.from_pretrained(base, directory).merge_and_unload()
        else:
            model = loader[kind].from_pretrained(directory, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(
            model.eval(),
            tokenizer,
            kind,
            PackingSettings(**settings["packing"]),
            generation or GenerationSettings(**settings["generation"]),
            base=settings.get("base"),
            finetuning=FinetuneSettings(**settings.get("finetuning", {})),
        )


def build_fuser(
    kind: str,
    name_or_path: str | None = None,
    config: dict[str, Any] | None = None,
    tokenizer: str | PreTrainedTokenizerBase | None = None,
    packing: dict[str, Any] | PackingSettings | None = None,
    generation: dict[str, Any] | GenerationSettings | None = None,
    finetuning: dict[str, Any] | FinetuneSettings | None = None,
) -> GenFuser:
    """A fuser from pretrained weights (`name_or_path`) or a config dict (random weights: tests, speed runs).

    Args:
        kind: "seq2seq", "bert2bert" or "causal".
        name_or_path: "minilm", a hub id (google/flan-t5-xl) or a local folder.
        config: instead of weights, a model config dict with `model_type` (bert2bert: one BERT config for both
            sides, or {"encoder": {...}, "decoder": {...}}); `vocab_size` defaults to the tokenizer's.
        tokenizer: tokenizer name or folder (or a tokenizer); defaults to `name_or_path`.
        packing: `PackingSettings` fields.
        generation: `GenerationSettings` fields.
        finetuning: `FinetuneSettings` fields: what training will update (LoRA wraps the model in adapters).
    Returns:
        The fuser.
    """
    if kind not in KINDS:
        raise ValueError(f"fuser.kind={kind!r}; choose one of {list(KINDS)}")
    if (name_or_path is None) == (config is None):
        raise ValueError("give the fuser either name_or_path (pretrained) or config (random init), not both")
    tokenizer_name = tokenizer or name_or_path
    if tokenizer_name is None:
        raise ValueError("a fuser built from a config needs fuser.tokenizer (a name or folder)")
    loaded_tokenizer = (
        tokenizer_name
        if isinstance(tokenizer_name, PreTrainedTokenizerBase)
        else _load_tokenizer(tokenizer_name)
    )
    model = _build_model(kind, name_or_path, config, len(loaded_tokenizer))
    if kind == "bert2bert" and loaded_tokenizer.cls_token_id is None:
        raise ValueError("fuser.kind=bert2bert needs a tokenizer with [CLS] and [SEP] tokens")
    packing = packing if isinstance(packing, PackingSettings) else PackingSettings(**(packing or {}))
    generation = (
        generation if isinstance(generation, GenerationSettings) else GenerationSettings(**(generation or {}))
    )
    finetuning = (
        finetuning if isinstance(finetuning, FinetuneSettings) else FinetuneSettings(**(finetuning or {}))
    )
    log.info(
        "fuser: %s %s, %.1fM parameters",
        kind,
        name_or_path or config.get("model_type", "config"),
        model.num_parameters() / 1e6,
    )
    model = apply_finetuning(model, finetuning)
    return GenFuser(
        model, loaded_tokenizer, kind, packing, generation, base=name_or_path, finetuning=finetuning
    )


__all__ = [
    "FUSER_CONFIG_FILE",
    "GenFuser",
    "GenerationSettings",
    "KINDS",
    "NoRepeatInAnswer",
    "StopOnStrings",
    "build_fuser",
    "cut_at_stop_strings",
]
