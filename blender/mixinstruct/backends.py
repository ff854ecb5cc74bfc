"""Generation back ends: plain transformers `generate` (any device) and vLLM (the engine for scale).

Both take token ids, so the prompt a model sees is built once (`blender.mixinstruct.generate.build_prompt_ids`)
and is the same whichever engine runs it. A back end is made per model by `build_backend`; what it needs
from the model spec and the settings is passed in as plain values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from blender.devices import resolve_device
from blender.mixinstruct.candidate_models import DTYPES, CandidateGenerationSettings, CandidateModel

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


log = logging.getLogger(__name__)

VLLM_MISSING = (
    "The vLLM back end needs the `vllm` package, an optional extra: pip install 'blender[vllm]' "
    "(or run with generation.backend=transformers)."
)


@dataclass
class Generation:
    """One generated answer.

    Attributes:
        text: the decoded answer, cut at the first stop string and stripped of spaces/newlines at the ends.
        logprob: the summed log-probability of the answer's tokens (the original's `scores["logprobs"]`);
            transformers scores them under the sampling distribution (temperature, top-p applied, as the
            original), vLLM under the model's own distribution.
        n_tokens: the number of generated tokens before the stop.
    """

    text: str
    logprob: float | None
    n_tokens: int


class Backend(Protocol):
    """What candidate generation needs from an engine."""

    tokenizer: PreTrainedTokenizerBase

    def generate(
        self, prompt_ids: list[list[int]], seed: int, stop_token_ids: list[int], stop_strings: list[str]
    ) -> list[Generation]:
        """Generate one answer per prompt.

        Args:
            prompt_ids: the token ids of each prompt.
            seed: the seed of this call; the same prompts, seed and settings give the same answers.
            stop_token_ids: tokens that end an answer (EOS included).
            stop_strings: texts at which an answer is cut.
        Returns:
            One `Generation` per prompt, in order.
        """
        ...


def cut_at_stop_strings(text: str, stop_strings: list[str]) -> str:
    """The text up to the first occurrence of any stop string."""
    cut = len(text)
    for stop in stop_strings:
        pos = text.find(stop)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut]


class TransformersBackend:
    """Batched `model.generate` on left-padded prompts (decoder-only) or encoder inputs (seq2seq).

    Args:
        model: the candidate model spec.
        settings: decoding and batching settings.
    """

    def __init__(self, model: CandidateModel, settings: CandidateGenerationSettings) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        from blender.packaged_models import resolve_name_or_path

        self.settings = settings
        self.seq2seq = model.seq2seq
        self.device = resolve_device(settings.device)
        # A packaged model's short name ("gemma3-270m") becomes its folder; hub ids and folders pass through.
        checkpoint = resolve_name_or_path(model.checkpoint)
        self.tokenizer = AutoTokenizer.from_pretrained(
            resolve_name_or_path(model.tokenizer) if model.tokenizer else checkpoint,
            trust_remote_code=model.trust_remote_code,
        )
        if not self.seq2seq:
            # Left padding keeps every prompt's last token next to the first generated one.
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = DTYPES[model.dtype]
        if self.device.type == "cpu" and dtype == torch.float16:
            # Half precision on CPU is slow and some kernels lack it; the answers are not the paper's anyway.
            log.warning("%s: float16 on CPU; using float32", model.name)
            dtype = torch.float32
        cls = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.model = cls.from_pretrained(checkpoint, dtype=dtype, trust_remote_code=model.trust_remote_code)
        self.model.to(self.device).eval()
        log.info("%s: loaded %s on %s (%s)", model.name, model.checkpoint, self.device, dtype)

    def _generate_kwargs(self, stop_token_ids: list[int]) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = dict(
            max_new_tokens=s.max_new_tokens,
            num_beams=1,
            repetition_penalty=s.repetition_penalty,
            eos_token_id=stop_token_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            output_scores=True,
            return_dict_in_generate=True,
        )
        if s.decoding_method == "top_p_sampling":
            kwargs.update(do_sample=True, top_p=s.top_p, temperature=s.temperature, top_k=s.top_k)
        elif s.decoding_method == "greedy":
            kwargs.update(do_sample=False)
        else:
            raise ValueError(
                f"unknown decoding_method {s.decoding_method!r}; choose top_p_sampling or greedy"
            )
        return kwargs

    @torch.no_grad()
    def generate(
        self, prompt_ids: list[list[int]], seed: int, stop_token_ids: list[int], stop_strings: list[str]
    ) -> list[Generation]:
        """See `Backend.generate`; batches run in order under one seeded generator per call."""
        # Seeding per call (one call per shard) is what lets a resumed run repeat an uninterrupted one.
        torch.manual_seed(seed)
        kwargs = self._generate_kwargs(stop_token_ids)
        stops = set(stop_token_ids)
        results: list[Generation] = []
        for start in range(0, len(prompt_ids), self.settings.batch_size):
            batch = self.tokenizer.pad(
                {"input_ids": prompt_ids[start : start + self.settings.batch_size]}, return_tensors="pt"
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out = self.model.generate(**batch, **kwargs)
            # [batch, new tokens]: log-probs of the chosen tokens under the processed distribution.
            token_logprobs = self.model.compute_transition_scores(
                out.sequences, out.scores, normalize_logits=True
            )
            new_tokens = out.sequences[:, -token_logprobs.shape[1] :]
            for tokens, logprobs in zip(new_tokens.tolist(), token_logprobs.tolist(), strict=True):
                end = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
                text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
                text = cut_at_stop_strings(text, stop_strings).strip(" \n")
                results.append(Generation(text=text, logprob=float(sum(logprobs[:end])), n_tokens=end))
        return results


class VLLMBackend:
    """vLLM's offline `LLM.generate`, with tensor parallelism as vLLM offers it.

    Data parallelism is the shards: run one process per GPU group with `worker_index` / `num_workers`
    (see `CandidateGenerationSettings`), each with its own engine.

    Args:
        model: the candidate model spec.
        settings: decoding and engine settings.
    Raises:
        ImportError: naming the extra to install, when vLLM is absent.
    """

    def __init__(self, model: CandidateModel, settings: CandidateGenerationSettings) -> None:
        try:
            import vllm
        except ImportError as e:
            raise ImportError(VLLM_MISSING) from e
        if model.seq2seq:
            raise ValueError(
                f"{model.name}: vLLM does not run encoder-decoder models; set backend: transformers for it"
            )
        self.settings = settings
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model.checkpoint,
            tokenizer=model.tokenizer or model.checkpoint,
            dtype=model.dtype,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            trust_remote_code=model.trust_remote_code,
            seed=settings.seed,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self, prompt_ids: list[list[int]], seed: int, stop_token_ids: list[int], stop_strings: list[str]
    ) -> list[Generation]:
        """See `Backend.generate`; each request has its own seed (seed + its position), so answers do not
        depend on how vLLM batches them."""
        s = self.settings
        greedy = s.decoding_method == "greedy"
        params = [
            self._vllm.SamplingParams(
                n=1,
                temperature=0.0 if greedy else s.temperature,
                top_p=1.0 if greedy else s.top_p,
                top_k=-1 if greedy or s.top_k == 0 else s.top_k,
                max_tokens=s.max_new_tokens,
                repetition_penalty=s.repetition_penalty,
                stop_token_ids=list(stop_token_ids),
                stop=list(stop_strings) or None,
                seed=seed + i,
                logprobs=0,
            )
            for i in range(len(prompt_ids))
        ]
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for out in outputs:
            c = out.outputs[0]
            text = cut_at_stop_strings(c.text, stop_strings).strip(" \n")
            results.append(Generation(text=text, logprob=c.cumulative_logprob, n_tokens=len(c.token_ids)))
        return results


BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def build_backend(model: CandidateModel, settings: CandidateGenerationSettings) -> Backend:
    """The back end for a model: its own `backend` when set, else the settings' one.

    Args:
        model: the candidate model spec.
        settings: generation settings.
    Returns:
        A loaded back end.
    """
    name = model.backend or settings.backend
    if name not in BACKENDS:
        raise ValueError(f"unknown generation backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name](model, settings)
