"""Training throughput on a lent GPU, through blender's own loop (`blender.training.loop.fit`), from configs only.

    ranker: a DeBERTa-v3-large-sized encoder (24 layers, hidden 1024, vocab 128100), random weights, bf16, pair
            sequences of --seq-len tokens in micro-batches of --batch-size: pairs/s, tokens/s and the model FLOPs
            utilisation (MFU) against the GPU's dense bf16 peak.
    fuser:  a flan-t5-base-sized encoder-decoder (12+12 layers, d_model 768), random weights, bf16, --seq-len source
            and --target-len target tokens: samples/s. `scripts/gpu_check.sh` launches it under ZeRO-2 with
            optimizer offload (conf/accelerate/zero2.yaml), the paper's GenFuser setting.

Nothing is downloaded: the models are built from their configs and fed random token ids (weights and data do
not change speed). Each part writes `<out>/gpu_check_<part>.json`. `--tiny` shrinks both models and the run so
the script runs on a CPU in seconds (what the test checks); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import Tensor, nn

from blender.files import write_json_atomic
from blender.training.loop import TrainSettings, fit

log = logging.getLogger("gpu_check")

# Dense bf16 peak (no sparsity) of the GPUs this may be lent, in FLOP/s, from the vendors' data sheets.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def deberta_v3_large_config(tiny: bool) -> transformers.DebertaV2Config:
    """microsoft/deberta-v3-large's architecture, written out (its config.json), or a 2-layer toy with --tiny."""
    size = (
        dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=1000
        )
        if tiny
        else dict(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            vocab_size=128100,
        )
    )
    return transformers.DebertaV2Config(
        **size,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        type_vocab_size=0,
        layer_norm_eps=1e-7,
    )


def flan_t5_base_config(tiny: bool) -> transformers.T5Config:
    """google/flan-t5-base's architecture (its config.json), or a 2+2-layer toy with --tiny."""
    size = (
        dict(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, vocab_size=1000)
        if tiny
        else dict(
            d_model=768,
            d_ff=2048,
            num_layers=12,
            num_decoder_layers=12,
            num_heads=12,
            d_kv=64,
            vocab_size=32128,
        )
    )
    return transformers.T5Config(
        **size,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.1,
        decoder_start_token_id=0,
        pad_token_id=0,
    )


class PairScorer(nn.Module):
    """PairRanker's shape for timing: the encoder over a pair sequence, a score from the first token."""

    def __init__(self, config: transformers.DebertaV2Config) -> None:
        super().__init__()
        self.encoder = transformers.DebertaV2Model(config)
        self.head = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])


def random_batches(
    n: int, batch_size: int, seq_len: int, vocab: int, target_len: int | None, seed: int
) -> list:
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        batch = {
            "input_ids": torch.randint(1, vocab, (batch_size, seq_len), generator=generator),
            "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        }
        if target_len is not None:
            batch["labels"] = torch.randint(1, vocab, (batch_size, target_len), generator=generator)
        batches.append(batch)
    return batches


def matmul_flops_per_token(n_params: int, layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs per token, forward and backward: 6 × the non-embedding parameters plus attention's
    12 × layers × hidden × sequence (PaLM, appendix B). DeBERTa's disentangled attention adds c2p/p2c terms
    on top, so the MFU reported is a lower bound."""
    return 6 * n_params + 12 * layers * hidden * seq_len


def timed_fit(
    model: nn.Module, loss_fn, batches: list, steps: int, warmup: int, precision: str
) -> dict[str, float]:
    """Run `fit` over `batches`, timing the steps after the first `warmup` (compilation, allocator warm-up)."""
    stamps: list[float] = []

    def timed_loss(m: nn.Module, batch: dict[str, Tensor]):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return loss_fn(m, batch)

    settings = TrainSettings(
        epochs=1,
        batch_size=batches[0]["input_ids"].shape[0],
        max_steps=steps,
        lr=1e-5,
        head_lr=None,
        warmup_ratio=0.0,
        mixed_precision=precision,
        save_every_steps=10**9,  # no checkpoint inside the timed steps (one is written at the end)
        log_every_steps=10**9,
        show_progress=False,
        resume="never",
    )
    with tempfile.TemporaryDirectory() as folder:
        fit(model, timed_loss, lambda epoch: batches, settings, folder)
    if len(stamps) < warmup + 2:
        raise RuntimeError(f"{len(stamps)} steps ran; --steps must exceed --warmup + 1")
    timed = stamps[warmup:]
    return {"seconds_per_step": (timed[-1] - timed[0]) / (len(timed) - 1), "steps_timed": len(timed) - 1}


def machine() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "gpus_visible": torch.cuda.device_count(),
        "host": platform.node(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def peak_flops(gpu: str | None) -> float | None:
    return next((peak for name, peak in PEAK_BF16.items() if gpu and name in gpu), None)


def check_ranker(args: argparse.Namespace) -> dict[str, Any]:
    config = deberta_v3_large_config(args.tiny)
    torch.manual_seed(0)
    model = PairScorer(config)
    n_params = sum(p.numel() for p in model.parameters())
    n_embedding = model.encoder.embeddings.word_embeddings.weight.numel()
    batches = random_batches(args.steps, args.batch_size, args.seq_len, config.vocab_size, None, seed=0)

    def loss_fn(m: nn.Module, batch: dict[str, Tensor]):
        scores = m(batch["input_ids"], batch["attention_mask"]).float()
        return nn.functional.logsigmoid(scores[:, 0] - scores[:, 1]).neg().mean(), {}

    timing = timed_fit(model, loss_fn, batches, args.steps, args.warmup, args.precision)
    tokens_per_s = args.batch_size * args.seq_len / timing["seconds_per_step"]
    flops = matmul_flops_per_token(
        n_params - n_embedding, config.num_hidden_layers, config.hidden_size, args.seq_len
    )
    info = machine()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(info["gpu"])
    return {
        "part": "ranker",
        "model": "deberta-v3-large-sized encoder (random init)"
        if not args.tiny
        else "tiny deberta-v2 (dry run)",
        "parameters": n_params,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        **timing,
        "pairs_per_s": args.batch_size / timing["seconds_per_step"],
        "tokens_per_s": tokens_per_s,
        "train_flops_per_token": flops,
        "achieved_tflops": tokens_per_s * flops / 1e12,
        "peak_tflops": None if peak is None else peak / 1e12,
        "mfu": None if peak is None else tokens_per_s * flops / peak,
        "machine": info,
    }


def check_fuser(args: argparse.Namespace) -> dict[str, Any]:
    config = flan_t5_base_config(args.tiny)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(config)
    batches = random_batches(
        args.steps, args.batch_size, args.seq_len, config.vocab_size, args.target_len, seed=1
    )

    def loss_fn(m: nn.Module, batch: dict[str, Tensor]):
        return m(**batch).loss, {}

    timing = timed_fit(model, loss_fn, batches, args.steps, args.warmup, args.precision)
    from accelerate.state import AcceleratorState

    state = AcceleratorState()
    plugin = state.deepspeed_plugin
    return {
        "part": "fuser",
        "model": "flan-t5-base-sized encoder-decoder (random init)" if not args.tiny else "tiny t5 (dry run)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "precision": args.precision,
        "distributed": str(state.distributed_type),
        "zero_stage": None if plugin is None else plugin.zero_stage,
        # Offloaded, DeepSpeed steps our torch AdamW on the CPU partitions (blender.training.loop), not its fused
        # CPU Adam: slower at this size than the paper's runs.
        "optimizer": "torch AdamW" + ("" if plugin is None else " on DeepSpeed's partitions"),
        "processes": state.num_processes,
        "batch_size_per_process": args.batch_size,
        "source_len": args.seq_len,
        "target_len": args.target_len,
        **timing,
        "samples_per_s": args.batch_size * state.num_processes / timing["seconds_per_step"],
        "machine": machine(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", choices=["ranker", "fuser"])
    parser.add_argument("--out", type=Path, default=Path("bench/gpu_check"))
    parser.add_argument("--tiny", action="store_true", help="toy sizes and 4 steps: a CPU dry run")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 30, --tiny 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5, --tiny 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="ranker 16 pairs, fuser 8; --tiny 2")
    parser.add_argument(
        "--seq-len", type=int, default=None, help="ranker 512 (64 + 2 x 224), fuser 512; --tiny 16"
    )
    parser.add_argument("--target-len", type=int, default=None, help="fuser target tokens (128; --tiny 8)")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "no"])
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the GPU's dense peak, when not in PEAK_BF16"
    )
    args = parser.parse_args(argv)
    defaults = {
        "steps": 4 if args.tiny else 30,
        "warmup": 1 if args.tiny else 5,
        "batch_size": 2 if args.tiny else (16 if args.part == "ranker" else 8),
        "seq_len": 16 if args.tiny else 512,
        "target_len": 8 if args.tiny else 128,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.tiny and not torch.cuda.is_available():
        sys.exit(
            "gpu_check: no CUDA device here; --tiny runs the toy sizes on the CPU (numbers mean nothing)"
        )
    result = check_ranker(args) if args.part == "ranker" else check_fuser(args)
    from blender.distributed import is_main_process

    if is_main_process():
        path = args.out / f"gpu_check_{args.part}.json"
        write_json_atomic(path, result)
        log.info("wrote %s: %s", path, {k: v for k, v in result.items() if k != "machine"})
    return result


if __name__ == "__main__":
    main()
