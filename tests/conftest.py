"""Shared fixtures: a tokenizer and encoders made on the spot, small records, composed configs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

import blender.cli.resolvers  # noqa: F401  (registers the config resolvers the configs use)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED = REPO.parent / "shared"


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (scripts are not a package), for tests of their functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


WORDS = "the answer is good bad a b c d e f g h one two three yes no maybe".split()


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = Whitespace()
    # BERT-style wrapping, so each part looks like the original's [CLS] ... [SEP].
    core.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


# Budgets that fit the tiny encoder's 384 positions (PairRanker's defaults, 64 + 2 × 224, need 512).
TINY_BUDGETS = {"source_max_length": 12, "candidate_max_length": 10}


def make_tiny_encoder(vocab_size: int, seed: int = 0) -> BertModel:
    import torch

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=384,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertModel(config)


@pytest.fixture
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return make_tiny_tokenizer()


@pytest.fixture
def tiny_ranker():
    from blender.rankers.pairranker import PairRanker

    tokenizer = make_tiny_tokenizer()
    ranker = PairRanker(
        make_tiny_encoder(len(tokenizer)),
        tokenizer,
        task_names=["q"],
        dropout=0.0,
        source_max_length=12,
        candidate_max_length=10,
        pooling="marker",
    )
    return ranker.eval()


def make_raw_record(index: int, n_candidates: int = 4, with_cmp: bool = True) -> dict:
    """A small valid record; candidate k's text has k+1 words and score k (longer is better)."""
    models = [f"m{k}" for k in range(n_candidates)]
    record = {
        "id": f"test/{index}",
        "instruction": "the answer is",
        "input": "",
        "output": "the good answer",
        "candidates": [
            {
                "model": m,
                "decoding_method": "greedy",
                "text": " ".join(WORDS[4 : 5 + k]) + f" {WORDS[(index + k) % 5]}",
                "scores": {"gpt4_pref": (k + 1) / (n_candidates + 1), "other": float(-k)},
            }
            for k, m in enumerate(models)
        ],
    }
    if with_cmp:
        record["cmp_results"] = {
            f"{a},{b}": "B is better" for i, a in enumerate(models) for b in models[i + 1 :]
        }
    return record


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """A folder with train (12 records) and val (6 records) splits."""
    folder = tmp_path / "data"
    write_jsonl(folder / "train.jsonl", [make_raw_record(i) for i in range(12)])
    write_jsonl(folder / "val.jsonl", [make_raw_record(100 + i) for i in range(6)])
    return folder


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture
def one_thread():
    """Tiny models run their many small ops on one thread: on a shared 2-core machine two threads spin-wait on
    each other (a tiny T5 step goes from 40 ms to 2 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
