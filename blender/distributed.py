"""Work split across the processes of one run (`accelerate launch`, DDP or DeepSpeed) and gathered back.

Evaluation and ranking hand each process a contiguous shard of the records and gather the results once, in
input order, checking that no record is lost or counted twice; training hands out micro-batches round-robin and
pads the last round with zero-weight batches so that every process runs as many steps (`round_robin_batches`).
In one plain process every function here is the identity, so callers need no special case.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Set while every process must run the same forward passes (ZeRO-3 gathers each layer's weights from all
# processes in every forward), so a shard per process would leave some waiting on the others for ever.
_lockstep = [False]


def process_count() -> int:
    """How many processes this run has (1 outside a launched run)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_index() -> int:
    """This process's rank (0 outside a launched run)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """Whether this process writes the run's files: rank 0 of the process group, else of the launcher's RANK."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def join_launched_run() -> None:
    """Join the process group of a launched run now (accelerate's `PartialState`), so work before training (the
    fuser's top-K) is sharded too; a no-op in a plain process or once joined."""
    if process_count() > 1 or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return
    from accelerate import PartialState

    # Without a GPU accelerate needs telling (see `_launch_layout` in `blender.training.loop`): DDP runs on the
    # CPU over gloo; DeepSpeed needs its backend named.
    if torch.cuda.is_available():
        PartialState()
    elif os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        PartialState(backend="gloo")
    else:
        PartialState(cpu=True)


def barrier() -> None:
    """Wait for every process (after the main one wrote a file the others read)."""
    if process_count() > 1:
        dist.barrier()


@contextlib.contextmanager
def lockstep() -> Iterator[None]:
    """Every process runs all the work (no sharding) while this is open: ZeRO-3 evaluation."""
    before, _lockstep[0] = _lockstep[0], True
    try:
        yield
    finally:
        _lockstep[0] = before


def shard_range(n_items: int, n_processes: int, index: int) -> range:
    """The contiguous share of `n_items` that process `index` of `n_processes` handles (sizes differ by one at
    most; the first `n_items % n_processes` processes take one more)."""
    if not 0 <= index < n_processes:
        raise ValueError(f"process index {index} outside 0..{n_processes - 1}")
    base, extra = divmod(n_items, n_processes)
    start = index * base + min(index, extra)
    return range(start, start + base + (1 if index < extra else 0))


def map_sharded(
    fn: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T], what: str = "records"
) -> list[R]:
    """`fn(items)`, with each process running `fn` on its shard and every process getting all results back.

    Args:
        fn: items -> one result per item, in order.
        items: the same sequence on every process.
        what: names the items in errors.
    Returns:
        One result per item, in input order, on every process.
    Raises:
        RuntimeError: a shard's results are not one per item (nothing is silently lost or doubled).
    """
    n_processes = process_count()
    if n_processes == 1 or _lockstep[0]:
        results = list(fn(items))
        _check_count(results, len(items), what, "this process")
        return results
    index = process_index()
    shard = shard_range(len(items), n_processes, index)
    mine = list(fn([items[k] for k in shard])) if len(shard) else []
    _check_count(mine, len(shard), what, f"process {index}")
    parts: list[list[R] | None] = [None] * n_processes
    dist.all_gather_object(parts, mine)  # one gather, in rank order: rank order is input order
    gathered = [r for part in parts for r in part]
    _check_count(gathered, len(items), what, f"the {n_processes} processes together")
    return gathered


def _check_count(results: Sequence, expected: int, what: str, where: str) -> None:
    if len(results) != expected:
        raise RuntimeError(f"{where} returned {len(results)} results for {expected} {what}")


def round_robin_batches(n_batches: int, n_processes: int, index: int) -> list[tuple[int, bool]]:
    """The micro-batches process `index` trains on in one epoch: batch k goes to process k % n_processes.

    When `n_batches` is not a multiple of `n_processes`, the processes left without a batch in the last round
    run a copy of their first batch with weight 0 (a filler: it trains nothing), so every process runs the same
    number of forward and backward passes and no collective waits for ever. Nothing is dropped and no batch is
    trained twice; the gradient of that last round is (1/n_processes) × the sum of its real batches', as a
    single process accumulating `n_processes` micro-batches would have.

    Returns:
        (batch index, is_filler) per micro-batch of this process, in order.
    """
    if n_batches == 0:
        return []
    mine = [(k, False) for k in range(index, n_batches, n_processes)]
    rounds = -(-n_batches // n_processes)
    if len(mine) < rounds:
        mine.append((mine[0][0] if mine else 0, True))
    return mine
