"""Import `bleurt_pytorch` 0.0.1 under transformers 5, where it does not import as released.

bleurt-pytorch 0.0.1 (the latest release) was written against transformers 4 and uses four things that
transformers 5 removed:

1. `transformers.pytorch_utils.find_pruneable_heads_and_indices` (imported by `modeling_bleurt`; only used
   to prune attention heads, which scoring never does);
2. the module `transformers.models.bert.tokenization_bert_fast` (transformers 5 folded the fast tokenizer into
   `tokenization_bert`, which still exports `BertTokenizerFast` as an alias);
3. `PreTrainedModel.get_extended_attention_mask` and
4. `PreTrainedModel.get_head_mask`, both called in `BleurtModel.forward`.

`import_bleurt_pytorch` provides 1 and 2 only while `bleurt_pytorch` imports (its modules bind the names at
import time) and then restores transformers as it was, so nothing else sees them. 3 and 4 become methods of
`BleurtPreTrainedModel`, the package's own base class, with transformers 4's semantics for an encoder. Under
transformers 4 every step is skipped, because nothing is missing.

One behaviour changed too: `BleurtTokenizer.from_pretrained` tries the WordPiece tokenizer and falls back to
SentencePiece (BLEURT-20) when that raises, but transformers 5 builds an empty WordPiece vocabulary instead of
raising when `vocab.txt` is missing. `load_bleurt_tokenizer` makes the fallback happen. Converting BLEURT-20's
`spm.model` under transformers 5 needs the `protobuf` package.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

_BERT_FAST_MODULE = "transformers.models.bert.tokenization_bert_fast"


def find_pruneable_heads_and_indices(
    heads: list[int] | set[int], n_heads: int, head_size: int, already_pruned_heads: set[int]
) -> tuple[set[int], Tensor]:
    """Find the heads still to prune and the flat indices of the weights to keep (transformers 4's helper).

    Args:
        heads: heads to prune.
        n_heads: heads currently in the layer.
        head_size: size of one head.
        already_pruned_heads: heads pruned before, numbered as in the unpruned layer.
    Returns:
        (heads to prune now, [(n_heads - len(heads)) * head_size] indices of the weights to keep).
    """
    mask = torch.ones(n_heads, head_size)
    to_prune = set(heads) - already_pruned_heads
    for head in to_prune:
        # Renumber: heads pruned earlier no longer occupy a slot.
        mask[head - sum(1 for pruned in already_pruned_heads if pruned < head)] = 0
    keep = mask.view(-1).eq(1)
    return to_prune, torch.arange(len(keep))[keep].long()


def _get_extended_attention_mask(
    self: torch.nn.Module, attention_mask: Tensor, input_shape: tuple[int, ...]
) -> Tensor:
    """[batch, seq] or [batch, seq, seq] 0/1 mask -> additive [batch, 1, (1|seq), seq] mask (encoder only)."""
    if attention_mask.dim() == 3:
        extended = attention_mask[:, None, :, :]
    elif attention_mask.dim() == 2:
        extended = attention_mask[:, None, None, :]
    else:
        raise ValueError(
            f"attention_mask of shape {tuple(attention_mask.shape)} for input of shape {input_shape}"
        )
    extended = extended.to(dtype=self.dtype)
    # The most negative finite value, not -inf, so a fully masked row gives uniform attention rather than NaN.
    return (1.0 - extended) * torch.finfo(self.dtype).min


def _get_head_mask(self: torch.nn.Module, head_mask: Tensor | None, num_hidden_layers: int) -> list[None]:
    """No head mask -> one `None` per layer; head masking itself left transformers in v5 and is not supported."""
    if head_mask is not None:
        raise NotImplementedError("head_mask is not supported for BLEURT under transformers 5")
    return [None] * num_hidden_layers


@contextlib.contextmanager
def _transformers4_names() -> Iterator[None]:
    """Provide the two transformers 4 import paths bleurt_pytorch needs, then remove them again."""
    pytorch_utils = importlib.import_module("transformers.pytorch_utils")
    added_function = not hasattr(pytorch_utils, "find_pruneable_heads_and_indices")
    added_module = False
    if added_function:
        pytorch_utils.find_pruneable_heads_and_indices = find_pruneable_heads_and_indices
    try:
        importlib.import_module(_BERT_FAST_MODULE)
    except ModuleNotFoundError:
        sys.modules[_BERT_FAST_MODULE] = importlib.import_module("transformers.models.bert.tokenization_bert")
        added_module = True
    try:
        yield
    finally:
        if added_function:
            del pytorch_utils.find_pruneable_heads_and_indices
        if added_module:
            del sys.modules[_BERT_FAST_MODULE]


def import_bleurt_pytorch() -> ModuleType:
    """Import `bleurt_pytorch` so that it works under transformers 4 and 5.

    Returns:
        The `bleurt_pytorch` module (`BleurtConfig`, `BleurtForSequenceClassification`, `BleurtTokenizer`).
    Raises:
        ImportError: bleurt-pytorch is not installed; the message says how to install it.
    """
    if "bleurt_pytorch" not in sys.modules:
        # find_spec, not a trial import: the package's __init__ is what fails under transformers 5.
        if importlib.util.find_spec("bleurt_pytorch") is None:
            # --no-deps keeps pip away from the installed torch; sentencepiece is its one other need.
            raise ImportError(
                "BLEURT needs the 'bleurt-pytorch' package: pip install --no-deps 'bleurt-pytorch==0.0.1' sentencepiece"
            )
        with _transformers4_names():
            importlib.import_module("bleurt_pytorch")
    bleurt_pytorch = sys.modules["bleurt_pytorch"]
    base = importlib.import_module("bleurt_pytorch.bleurt.modeling_bleurt").BleurtPreTrainedModel
    if not hasattr(base, "get_extended_attention_mask"):
        base.get_extended_attention_mask = _get_extended_attention_mask
    if not hasattr(base, "get_head_mask"):
        base.get_head_mask = _get_head_mask
    return bleurt_pytorch


def load_bleurt_tokenizer(checkpoint: str) -> PreTrainedTokenizerBase:
    """Load a BLEURT checkpoint's tokenizer: WordPiece (`vocab.txt`) or SentencePiece (`spm.model`, BLEURT-20).

    Args:
        checkpoint: hub id or local folder.
    Returns:
        The tokenizer.
    Raises:
        OSError: neither tokenizer can be loaded from `checkpoint`.
    """
    bleurt_pytorch = import_bleurt_pytorch()
    tokenizer = bleurt_pytorch.BleurtTokenizer.from_pretrained(checkpoint)
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        # transformers 5 made an empty WordPiece tokenizer where 4 raised: take the SentencePiece branch.
        sentencepiece = importlib.import_module("bleurt_pytorch.bleurt.tokenization_bleurt_sp")
        tokenizer = sentencepiece.BleurtSPTokenizer.from_pretrained(checkpoint)
    return tokenizer
