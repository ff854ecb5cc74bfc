"""Candidate generation with random tiny models through the transformers back end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from blender.files import read_jsonl_rows
from blender.mixinstruct.backends import VLLM_MISSING, VLLMBackend
from blender.mixinstruct.generate import (
    CandidateGenerationSettings,
    CandidateModel,
    build_prompt_ids,
    candidates_complete,
    generate_candidates,
    merge_candidates,
    shard_is_complete,
    shard_paths,
)
from blender.mixinstruct.templates import TEMPLATES, guess_template, prompt_text
from blender.mixinstruct.tiny_models import build_tiny_model, build_tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]
RECORDS = [
    {
        "id": f"t/{i}",
        "instruction": "Give three tips" if i % 2 else "",
        "input": "about the sea " * (i + 1),
        "output": "o",
    }
    for i in range(5)
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_models")
    build_tiny_model(root / "llama-chat", "llama", seed=0, chat_template=True)
    build_tiny_model(root / "gpt2", "gpt2", seed=1)
    build_tiny_model(root / "t5", "t5", seed=2)
    return root


@pytest.fixture()
def models(tiny_dir: Path) -> list[CandidateModel]:
    return [
        CandidateModel("llama-chat", str(tiny_dir / "llama-chat"), dtype="float32"),
        CandidateModel("gpt2", str(tiny_dir / "gpt2"), template="vicuna_v1.1", dtype="float32"),
    ]


def _settings(**overrides: object) -> CandidateGenerationSettings:
    base: dict[str, object] = dict(
        backend="transformers",
        prefer_tokenizer_chat_template=True,
        max_new_tokens=6,
        batch_size=2,
        shard_size=2,
        device="cpu",
        seed=7,
    )
    base.update(overrides)
    return CandidateGenerationSettings(**base)  # type: ignore[arg-type]


def _run_all(models: list[CandidateModel], settings: CandidateGenerationSettings, out: Path) -> list[dict]:
    for model in models:
        generate_candidates(RECORDS, model, settings, out)
    return merge_candidates(RECORDS, models, settings, out)


def test_shapes_shards_and_merge_order(models: list[CandidateModel], tmp_path: Path) -> None:
    settings = _settings()
    merged = _run_all(models, settings, tmp_path)
    assert [r["id"] for r in merged] == [r["id"] for r in RECORDS]
    for record in merged:
        assert [c["model"] for c in record["candidates"]] == ["llama-chat", "gpt2"]
        for c in record["candidates"]:
            assert set(c) == {"model", "text", "decoding_method", "scores"}
            assert isinstance(c["text"], str) and c["decoding_method"] == "top_p_sampling"
            assert c["scores"]["logprobs"] <= 0
    # 5 records in shards of 2: shards 0, 1, 2 of sizes 2, 2, 1, each with its marker.
    for i, size in enumerate([2, 2, 1]):
        path, marker = shard_paths(tmp_path, "gpt2", i)
        assert len(read_jsonl_rows(path)) == size
        assert json.loads(marker.read_text())["n_records"] == size
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_same_seed_same_text_other_seed_other_text(models: list[CandidateModel], tmp_path: Path) -> None:
    a = _run_all(models[1:], _settings(), tmp_path / "a")
    b = _run_all(models[1:], _settings(), tmp_path / "b")
    c = _run_all(models[1:], _settings(seed=8), tmp_path / "c")
    assert a == b
    assert [r["candidates"][0]["text"] for r in a] != [r["candidates"][0]["text"] for r in c]


def test_rerun_skips_finished_shards_and_redoes_broken_ones(
    models: list[CandidateModel], tmp_path: Path
) -> None:
    model, settings = models[1], _settings()
    assert generate_candidates(RECORDS, model, settings, tmp_path)["generated"] == 3
    assert generate_candidates(RECORDS, model, settings, tmp_path) == {
        "shards": 3,
        "mine": 3,
        "skipped": 3,
        "generated": 0,
    }
    # A shard file whose bytes changed after its marker was written is not taken as finished.
    path, _ = shard_paths(tmp_path, model.name, 1)
    path.write_text(path.read_text()[:-5])
    assert not shard_is_complete(tmp_path, model, settings, 1, ["t/2", "t/3"])
    assert generate_candidates(RECORDS, model, settings, tmp_path)["generated"] == 1
    # Different input ids for a shard (another mix) make it unfinished too.
    assert not shard_is_complete(tmp_path, model, settings, 0, ["t/0", "t/9"])
    # So do settings that change the answers; the device does not.
    assert not shard_is_complete(tmp_path, model, _settings(temperature=1.0), 0, ["t/0", "t/1"])
    assert shard_is_complete(tmp_path, model, _settings(device="cpu:0"), 0, ["t/0", "t/1"])


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from blender.mixinstruct.generate import CandidateModel, CandidateGenerationSettings, generate_candidates
    records, checkpoint, out = {records!r}, {checkpoint!r}, {out!r}
    model = CandidateModel("gpt2", checkpoint, template="vicuna_v1.1", dtype="float32")
    settings = CandidateGenerationSettings(backend="transformers", prefer_tokenizer_chat_template=True, max_new_tokens=6,
                                           batch_size=2, shard_size=2, device="cpu", seed=7)

    def hook(event, index):
        # Killed between shard 1's file and its marker: the worst moment for a resumable run.
        if event == "shard_written" and index == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    generate_candidates(records, model, settings, out, hook=hook)
    """
)


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(
    models: list[CandidateModel], tmp_path: Path
) -> None:
    model, settings = models[1], _settings()
    out = tmp_path / "killed"
    script = _KILL_SCRIPT.format(records=RECORDS, checkpoint=model.checkpoint, out=str(out))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]

    shard0, marker0 = shard_paths(out, model.name, 0)
    shard1, marker1 = shard_paths(out, model.name, 1)
    assert marker0.exists() and shard1.exists() and not marker1.exists()
    assert candidates_complete(RECORDS, [model], settings, out) == ["gpt2 shard 1", "gpt2 shard 2"]
    before = (shard0.stat().st_mtime_ns, marker0.read_bytes())

    counts = generate_candidates(RECORDS, model, settings, out)
    assert counts == {"shards": 3, "mine": 3, "skipped": 1, "generated": 2}
    assert (shard0.stat().st_mtime_ns, marker0.read_bytes()) == before
    resumed = merge_candidates(RECORDS, [model], settings, out)
    assert resumed == _run_all([model], settings, tmp_path / "uninterrupted")


def test_hook_exception_leaves_finished_shards(models: list[CandidateModel], tmp_path: Path) -> None:
    model, settings = models[1], _settings()

    def fail_in_shard_2(event: str, index: int) -> None:
        if event == "shard_written" and index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_candidates(RECORDS, model, settings, tmp_path, hook=fail_in_shard_2)
    assert candidates_complete(RECORDS, [model], settings, tmp_path) == ["gpt2 shard 2"]
    with pytest.raises(RuntimeError, match="1 shards are not finished: gpt2 shard 2"):
        merge_candidates(RECORDS, [model], settings, tmp_path)


def test_workers_split_the_shards_and_merge_equals_one_worker(
    models: list[CandidateModel], tmp_path: Path
) -> None:
    model = models[1]
    w0 = generate_candidates(RECORDS, model, _settings(num_workers=2, worker_index=0), tmp_path / "dp")
    w1 = generate_candidates(RECORDS, model, _settings(num_workers=2, worker_index=1), tmp_path / "dp")
    assert (w0["generated"], w1["generated"]) == (2, 1)
    parallel = merge_candidates(RECORDS, [model], _settings(), tmp_path / "dp")
    assert parallel == _run_all([model], _settings(), tmp_path / "single")


def test_seq2seq_model(tiny_dir: Path, tmp_path: Path) -> None:
    t5 = CandidateModel("t5", str(tiny_dir / "t5"), template="raw", seq2seq=True, dtype="float32")
    merged = _run_all([t5], _settings(decoding_method="greedy"), tmp_path)
    assert len(merged) == 5 and all(r["candidates"][0]["decoding_method"] == "greedy" for r in merged)


def test_prompts_use_the_chat_template_else_the_named_one() -> None:
    record = {"instruction": "Name a prime", "input": "below ten", "output": ""}
    chat_tok = build_tiny_tokenizer(
        chat_template="{% for m in messages %}[{{ m['content'] }}]{% endfor %}<A>"
    )
    plain_tok = build_tiny_tokenizer()
    model = CandidateModel("m", "x", template="vicuna_v1.1")
    (chat_ids,) = build_prompt_ids([record], chat_tok, model, _settings())
    assert chat_tok.decode(chat_ids) == "[Name a prime\nbelow ten]<A>"
    (named_ids,) = build_prompt_ids([record], plain_tok, model, _settings())
    assert plain_tok.decode(named_ids).endswith("USER: Name a prime\nbelow ten ASSISTANT:")
    (forced,) = build_prompt_ids([record], chat_tok, model, _settings(prefer_tokenizer_chat_template=False))
    assert chat_tok.decode(forced) == plain_tok.decode(named_ids)
    # The user's text is cut before the template wraps it, so the assistant tag survives.
    long = {"instruction": "", "input": "word " * 400, "output": ""}
    (cut,) = build_prompt_ids([long], plain_tok, model, _settings(prompt_max_tokens=10))
    decoded = plain_tok.decode(cut)
    assert decoded.endswith(" ASSISTANT:") and decoded.count("wo") <= 10


def test_prompt_text_joins_instruction_and_input() -> None:
    assert prompt_text({"instruction": "a", "input": "b"}) == "a\nb"
    assert prompt_text({"instruction": "", "input": "b"}) == "b"
    assert prompt_text({"instruction": "a", "input": ""}) == "a"


def test_template_names_match_the_originals_choice_for_the_papers_models() -> None:
    expected = {
        "OpenAssistant/oasst-sft-4-pythia-12b-epoch-3.5": "oasst_pythia",
        "eachadea/vicuna-13b-1.1": "vicuna_v1.1",
        "chavinlo/alpaca-native": "alpaca",
        "mosesjun0h/llama-7b-hf-baize-lora-bf16": "baize",
        "fnlp/moss-moon-003-sft": "moss",
        "THUDM/chatglm-6b": "raw",
        "TheBloke/koala-7B-HF": "koala_v1",
        "databricks/dolly-v2-12b": "dolly_v2",
        "mosaicml/mpt-7b-instruct": "raw",
        "stabilityai/stablelm-tuned-alpha-7b": "stablelm",
        "google/flan-t5-xxl": "raw",
        "someone/unknown-model": "one_shot",
    }
    assert {name: guess_template(name) for name in expected} == expected
    assert TEMPLATES["dolly_v2"].render("Hi") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nHi\n\n### Response:\n"
    )
    assert TEMPLATES["moss"].render("Hi").endswith("<|Human|>:Hi<eoh>\n<|MOSS|>:")


def test_unknown_template_lists_choices() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        CandidateModel("m", "x", template="fastchat")


def test_vllm_backend_names_the_extra_when_vllm_is_absent(
    models: list[CandidateModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import vllm` raise ImportError whether or not vLLM is installed.
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"pip install 'blender\[vllm\]'") as err:
        VLLMBackend(models[1], _settings(backend="vllm"))
    assert str(err.value) == VLLM_MISSING
