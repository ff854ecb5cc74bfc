"""The decoder-only fuser on a tiny Gemma 3 built on the spot: the base-model prompt, answer-only labels, the
logits-for-the-answer loss, each fine-tuning mode, and a fuser that overfits 8 examples and stops at <eos>."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from blender.fuser.finetuning import FinetuneSettings
from blender.fuser.model import (
    IGNORE_INDEX,
    GenerationSettings,
    GenFuser,
    NoRepeatInAnswer,
    build_fuser,
    cut_at_stop_strings,
)
from blender.fuser.packing import CLOSING_PROMPT
from blender.fuser.training import FuserExample, causal_loss, encode_examples, fuser_loss
from tests.fuser.conftest import ANSWER_WORDS, TEMPLATE_WORDS

# Gemma's layout: <pad> 0, <eos> 1, <bos> 2, <unk> 3, and <bos> before every text.
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
TINY_GEMMA3 = {
    "model_type": "gemma3_text",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "full_attention"],
}
PACKING = {
    "candidate_max_length": 4,
    "max_source_length": 48,
    "max_target_length": 6,
    "separator": " | ",
    "add_special_tokens": True,
    "answer_prefix": " =>",
}


def gemma_like_tokenizer() -> PreTrainedTokenizerFast:
    words = [*GEMMA_SPECIALS, *"0123456789", *TEMPLATE_WORDS, *ANSWER_WORDS, "|", "=>"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    core.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )


def tiny_gemma(mode: str = "full", seed: int = 0, **generation) -> GenFuser:
    torch.manual_seed(seed)
    return build_fuser(
        "causal",
        config=TINY_GEMMA3,
        tokenizer=gemma_like_tokenizer(),
        packing=PACKING,
        generation={"num_beams": 1, "max_new_tokens": 12, "show_progress": False, **generation},
        finetuning={"mode": mode, "lora_r": 8, "lora_alpha": 16},
    )


def examples() -> list[FuserExample]:
    w = ANSWER_WORDS
    return [
        FuserExample(
            f"name {w[k]}", "", [f"{w[k]} {w[k + 1]}", f"{w[k + 2]}", "two three"], f"{w[k + 1]} {w[k]} the"
        )
        for k in range(8)
    ]


def test_the_prompt_starts_with_bos_ends_with_the_closing_instruction_and_labels_cover_the_answer():
    fuser = tiny_gemma()
    tokenizer = fuser.tokenizer
    # The first candidate is cut to 4 tokens and marked; the closing instruction and answer prefix always stay.
    example = fuser.encode("name b", "", ["b c d e f g", "h"], "c b is")
    ids, labels = example["input_ids"], example["labels"]
    n_answer = sum(label != IGNORE_INDEX for label in labels)
    prompt, answer = ids[: len(ids) - n_answer], ids[len(ids) - n_answer :]
    assert tokenizer.convert_ids_to_tokens(prompt[:1]) == ["<bos>"]
    assert tokenizer.decode(prompt[1:]) == (
        "Instruction : name b | Input : | Candidate 1 : b c d e ... | Candidate 2 : h | "
        + CLOSING_PROMPT.replace(":", " :")
        + " =>"
    )
    assert tokenizer.convert_ids_to_tokens(answer) == ["c", "b", "is", "<eos>"]
    assert labels == [IGNORE_INDEX] * len(prompt) + answer
    # A long source is cut inside the candidates, never in the closing instruction.
    long = fuser.encode("name b", "", ["b c d e"] * 20)["input_ids"]
    assert len(long) == PACKING["max_source_length"] and tokenizer.decode(long).endswith("instruction : =>")


def test_causal_loss_scores_the_answer_positions_only_and_matches_the_full_loss():
    fuser = tiny_gemma()
    encoded = encode_examples(
        fuser, examples()[:3] + [FuserExample("name", "", ["b"], "two three five seven")]
    )
    left = fuser.collate(encoded, left_pad=True)
    right = fuser.collate(encoded)
    fast, logs = causal_loss(fuser.model, left)
    full, _ = fuser_loss(fuser.model, right)  # transformers' own loss over every position
    assert fast.item() == pytest.approx(full.item(), rel=1e-5)
    assert logs["target_tokens"] == sum(len(e["labels"]) - e["labels"].count(IGNORE_INDEX) for e in encoded)
    with pytest.raises(ValueError, match="left-padded"):
        causal_loss(fuser.model, right)


@pytest.mark.parametrize("mode", ["full", "frozen_embeddings", "lora"])
def test_each_mode_trains_what_it_says(mode):
    fuser = tiny_gemma(mode)
    before = {n: p.detach().clone() for n, p in fuser.model.named_parameters()}
    batch = fuser.collate(encode_examples(fuser, examples()), left_pad=True)
    trainable = [p for p in fuser.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    for _ in range(2):
        loss, _ = causal_loss(fuser.model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in fuser.model.named_parameters() if not torch.equal(p, before[n])}
    embedding = next(n for n in before if "embed_tokens" in n)
    if mode == "full":
        assert embedding in changed and len(changed) == len(before)
    elif mode == "frozen_embeddings":
        assert embedding not in changed and len(changed) == len(before) - 1  # the tied output projection too
    else:
        assert changed and all("lora_" in n for n in changed)
        assert all("lora_" in n for n, p in fuser.model.named_parameters() if p.requires_grad)


def test_a_bad_mode_names_the_key():
    with pytest.raises(ValueError, match="fuser.finetuning.mode='adapters'"):
        FinetuneSettings(mode="adapters")


def overfit(fuser: GenFuser, steps: int, lr: float) -> list[float]:
    batch = fuser.collate(encode_examples(fuser, examples()), left_pad=True)
    optimizer = torch.optim.AdamW([p for p in fuser.model.parameters() if p.requires_grad], lr=lr)
    fuser.model.train()
    losses = []
    for _ in range(steps):
        loss, _ = causal_loss(fuser.model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def answers(fuser: GenFuser, settings: GenerationSettings | None = None) -> list[str]:
    data = examples()
    return fuser.generate(
        [e.instruction for e in data], [e.input for e in data], [e.candidates for e in data], settings
    )


def test_a_tiny_gemma_overfits_eight_examples_and_stops_at_its_end_token(tmp_path):
    fuser = tiny_gemma("full")
    losses = overfit(fuser, steps=150, lr=1e-2)
    assert losses[-1] < 0.05 < losses[0]
    # 12 new tokens allowed, 3 + <eos> needed: each answer ends where its target ended.
    assert answers(fuser) == [e.target for e in examples()]
    fuser.save(tmp_path / "fuser")
    loaded = GenFuser.load(tmp_path / "fuser")
    assert loaded.kind == "causal" and loaded.finetuning.mode == "full" and answers(loaded) == answers(fuser)


def test_a_lora_fuser_is_saved_as_adapters_over_its_base_and_loads_merged(tmp_path):
    # A base model in a folder, as the packaged name resolves to one.
    base = tiny_gemma("full", seed=1)
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    (tmp_path / "base" / "GEMMA_TERMS.html").write_text("terms")
    torch.manual_seed(0)
    fuser = build_fuser(
        "causal",
        name_or_path=str(tmp_path / "base"),
        packing=PACKING,
        generation={"num_beams": 1, "max_new_tokens": 12, "show_progress": False},
        finetuning={"mode": "lora", "lora_r": 8, "lora_alpha": 16},
    )
    overfit(fuser, steps=120, lr=2e-2)
    trained = answers(fuser)
    fuser.save(tmp_path / "fuser")
    saved = {p.name for p in (tmp_path / "fuser").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "GEMMA_TERMS.html"} <= saved
    assert "model.safetensors" not in saved  # the base's weights are not copied
    loaded = GenFuser.load(tmp_path / "fuser")
    assert type(loaded.model).__name__ == "Gemma3ForCausalLM"  # merged: no peft wrapper at inference
    assert answers(loaded) == trained
    # Its logits are the adapted model's.
    batch = fuser.collate(encode_examples(fuser, examples()[:2]), left_pad=True)
    fuser.model.eval()
    with torch.no_grad():
        expected = fuser.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(
        AutoModelForCausalLM.from_pretrained(tmp_path / "base")(input_ids=batch["input_ids"]).logits,
        expected,
        atol=1e-2,
    )


def test_stop_strings_end_an_answer_and_are_not_kept():
    assert cut_at_stop_strings("a b\n\nInstruction: c", ["\n\nInstruction:", "\n\nCandidate "]) == "a b"
    assert cut_at_stop_strings("a b", ["x"]) == "a b" and cut_at_stop_strings("a b", []) == "a b"
    fuser = tiny_gemma("full")
    overfit(fuser, steps=150, lr=1e-2)
    # Each target is "<w1> <w0> the": stopping at " the" leaves the first two words.
    cut = answers(
        fuser, GenerationSettings(num_beams=1, max_new_tokens=12, stop_strings=[" the"], show_progress=False)
    )
    assert cut == [" ".join(e.target.split()[:2]) for e in examples()]


def test_no_repeat_in_the_answer_bans_only_the_answers_own_ngrams():
    processor = NoRepeatInAnswer(n=2, prompt_width=2)
    # Prompt [5, 6]; answer [1, 2, 3, 1]: after "1", token 2 would repeat "1 2" (banned); 6 is free although
    # "5 6" is in the prompt.
    scores = processor(torch.tensor([[5, 6, 1, 2, 3, 1]]), torch.zeros(1, 8))
    assert scores[0, 2] == -float("inf") and torch.isfinite(scores[0, [0, 1, 3, 4, 5, 6, 7]]).all()
    assert torch.equal(processor(torch.tensor([[5, 6, 1]]), torch.zeros(1, 8)), torch.zeros(1, 8))
    # In generation: the tiny model trained to answer "<w1> <w0> the" still may, nothing in it repeats.
    fuser = tiny_gemma("full")
    overfit(fuser, steps=150, lr=1e-2)
    settings = GenerationSettings(
        num_beams=1, max_new_tokens=12, answer_no_repeat_ngram_size=2, show_progress=False
    )
    assert answers(fuser, settings) == [e.target for e in examples()]
