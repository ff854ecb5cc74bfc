"""One Accelerate training loop for every model here (rankers now, the fuser later).

A model plugs in with `loss_fn(model, batch) -> (loss, logs)`, a per-epoch batch list and an optional
`evaluate(model) -> metrics`. The loop handles devices, mixed precision and DeepSpeed (through the
`accelerate launch` config), gradient accumulation, clipping, the LR schedule, per-epoch validation,
keeping the best checkpoint by a validation metric, resuming after a kill, progress bars and logging.
Shaped like open-instruct's `finetune.py`; no HF Trainer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs, set_seed
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from blender.devices import resolve_device, resolve_precision
from blender.distributed import lockstep, round_robin_batches
from blender.files import write_dir_atomic, write_json_atomic
from blender.settings import check_types, require, require_choice, require_positive
from blender.training.checkpoints import (
    CheckpointHook,
    RunFolderError,
    check_fingerprint,
    keep_metrics_up_to,
    latest_checkpoint,
    pending_checkpoint,
    publish_checkpoint,
)

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]
STATE_FILE = "trainer_state.json"


@dataclass
class TrainSettings:
    """Optimisation and bookkeeping settings (`conf/trainer/*.yaml`).

    Attributes:
        epochs: passes over the training data.
        batch_size: examples per micro-batch (pairs, for a ranker).
        max_steps: stop after this many optimizer steps (None: run all epochs).
        lr: peak learning rate of the pretrained weights.
        head_lr: peak learning rate of newly initialised layers (None: same as lr).
        weight_decay: AdamW decay (not applied to biases and norms).
        warmup_ratio: share of steps with a linear warm-up.
        scheduler: a transformers schedule name ("linear", "cosine", "constant_with_warmup").
        optimizer: "adamw" or "adafactor" (the original ranker used Adafactor).
        grad_accum: micro-batches per optimizer step.
        max_grad_norm: clip the gradient norm (None: no clipping).
        mixed_precision: "no", "bf16", "fp16", "auto" (bf16 where this machine computes it natively, else "no":
            `blender.devices.native_bf16`), or None to take the launcher's setting.
        seed: seeds weights, sampling and dropout; epoch e draws its data with seed + e.
        eval_every_epochs: validate after every this many epochs (and after the last).
        best_metric: the validation metric that picks the best checkpoint.
        best_mode: "max" or "min".
        val_mode: how a pairwise ranker validates: "bubble" (2(N−1) passes, as the original) or "full"
            (N(N−1), MaxLogits); other models ignore it.
        save_every_steps: write a resumable checkpoint every this many optimizer steps.
        log_every_steps: log the running training loss every this many optimizer steps.
        resume: "auto" (true): continue from the newest checkpoint of `<output_dir>` when there is one, and
            refuse one trained under other settings; "never" (false): start over; "force": continue even though
            settings changed.
        show_progress: progress bars (main process only).
    """

    CONFIG_KEY: ClassVar[str] = "trainer"

    epochs: int = 1
    batch_size: int = 8
    max_steps: int | None = None
    lr: float = 5e-5
    head_lr: float | None = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    scheduler: str = "linear"
    optimizer: str = "adamw"
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: str | None = "auto"
    seed: int = 42
    eval_every_epochs: int = 1
    best_metric: str = "val/top1_oracle"
    best_mode: str = "max"
    val_mode: str = "bubble"
    save_every_steps: int = 100
    log_every_steps: int = 10
    resume: bool | str = "auto"
    show_progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.resume, bool):
            self.resume = "auto" if self.resume else "never"
        check_types(self)
        require_positive(
            self,
            "epochs",
            "batch_size",
            "grad_accum",
            "save_every_steps",
            "log_every_steps",
            "eval_every_epochs",
        )
        require_positive(self, "max_steps", allow_none=True)
        require(self, "lr", self.lr > 0, "must be above 0")
        require(self, "head_lr", self.head_lr is None or self.head_lr > 0, "must be above 0 (or null: lr)")
        require(self, "weight_decay", self.weight_decay >= 0, "must be 0 or more")
        require(self, "warmup_ratio", 0 <= self.warmup_ratio <= 1, "must lie in [0, 1]")
        require(
            self,
            "max_grad_norm",
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "must be above 0 or null",
        )
        require_choice(self, "optimizer", ("adamw", "adafactor"))
        require_choice(self, "mixed_precision", (None, "auto", "no", "bf16", "fp16"))
        require_choice(self, "best_mode", ("max", "min"))
        require_choice(self, "val_mode", ("bubble", "full"))
        require_choice(self, "resume", ("auto", "never", "force"))
        require(
            self,
            "best_metric",
            self.best_metric.startswith("val/"),
            'must name a validation metric, "val/..."',
        )


class NothingToTrainError(ValueError):
    """A run that would end with no optimizer step (no training examples); the message says why."""


@dataclass
class LoggerSettings:
    """Experiment tracking (`conf/logger/*.yaml`): "none" or "wandb" (mode "offline" needs no account)."""

    CONFIG_KEY: ClassVar[str] = "logger"

    name: str = "none"
    project: str = "blender"
    mode: str = "offline"
    entity: str | None = None
    run_name: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_types(self)
        require_choice(self, "name", ("none", "wandb"))
        require_choice(self, "mode", ("offline", "online", "disabled"))


@dataclass
class TrainerState:
    """What a resumed run needs besides the weights and optimizer: where it stopped and the best so far."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    num_processes: int | None = None  # None: written before runs recorded it (one process)


def build_optimizer(
    model: nn.Module, settings: TrainSettings, new_parameter_prefixes: Sequence[str] = ()
) -> torch.optim.Optimizer:
    """AdamW (or Adafactor) with no decay on biases and norms, and `head_lr` on newly initialised layers."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_new = any(name.startswith(p) for p in new_parameter_prefixes)
        decays = parameter.ndim > 1 and "norm" not in name.lower()
        groups.setdefault((is_new, decays), []).append(parameter)
    head_lr = settings.head_lr if settings.head_lr is not None else settings.lr
    param_groups = [
        {
            "params": params,
            "lr": head_lr if is_new else settings.lr,
            "weight_decay": settings.weight_decay if decays else 0.0,
        }
        for (is_new, decays), params in groups.items()
    ]
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=settings.lr)
    if settings.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(param_groups, lr=settings.lr, scale_parameter=False, relative_step=False)
    raise ValueError(f"optimizer {settings.optimizer!r}; choose adamw or adafactor")


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if mode == "max" else value < best


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    epoch_batches: Callable[[int], Sequence[dict[str, Tensor]]],
    settings: TrainSettings,
    output_dir: str | os.PathLike,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    save_model: Callable[[nn.Module, Path], None] | None = None,
    new_parameter_prefixes: Sequence[str] = (),
    logger: LoggerSettings | None = None,
    run_config: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
    val_metrics: Sequence[str] | None = None,
    checkpoint_hook: CheckpointHook | None = None,
) -> dict[str, Any]:
    """Train `model`, validating each epoch and keeping the best checkpoint in `<output_dir>/best`.

    Args:
        model: the module to train.
        loss_fn: (model, batch) -> (scalar loss, extra logs).
        epoch_batches: epoch index -> that epoch's micro-batches (deterministic given the index, so a
            resumed run sees the same data from where it stopped).
        settings: optimisation settings.
        output_dir: the run folder; holds `checkpoints/` (resumable state, `blender.training.checkpoints`), `best`,
            `metrics.jsonl` and `run_fingerprint.json`.
        evaluate: model -> validation metrics named like "val/top1_oracle".
        save_model: writes a loadable copy of the (unwrapped) model into a folder.
        new_parameter_prefixes: parameter-name prefixes trained at `head_lr`.
        logger: experiment tracking.
        run_config: the resolved config, stored with the tracker.
        fingerprint: the settings that shape this run (flat, JSON-able); a resume under other ones is refused
            unless `settings.resume` is "force". The number of processes is added here.
        val_metrics: the metric names `evaluate` returns, so a `best_metric` typo fails before training.
        checkpoint_hook: called at each point of a checkpoint swap (tests stop a run there).
    Returns:
        {"best_value", "best_epoch", "global_step", "history", "train/loss"}.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    logger = logger or LoggerSettings()
    if evaluate is not None and val_metrics is not None and settings.best_metric not in val_metrics:
        raise ValueError(f"trainer.best_metric={settings.best_metric!r} is not one of {sorted(val_metrics)}")
    mixed_precision = settings.mixed_precision
    if mixed_precision == "auto":
        mixed_precision = resolve_precision("auto", resolve_device("auto"), fp32_name="no")
        log.info("trainer.mixed_precision=auto: %s on this machine", mixed_precision)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and not torch.distributed.is_initialized():
        # A process of its own (not a launched run): accelerate keeps one global state per process and refuses
        # another mixed precision than the first fit's, so each fit here starts from a clean one.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=settings.grad_accum,
        mixed_precision=mixed_precision,
        log_with="wandb" if logger.name == "wandb" else None,
        project_dir=str(output_dir),
        **_launch_layout(),
    )
    set_seed(settings.seed)
    if logger.name not in ("none", "wandb"):
        raise ValueError(f"logger {logger.name!r}; choose none or wandb")
    if logger.name == "wandb":
        accelerator.init_trackers(
            logger.project,
            config=run_config or {},
            init_kwargs={
                "wandb": {
                    "mode": logger.mode,
                    "dir": str(output_dir),
                    "entity": logger.entity,
                    "name": logger.run_name or output_dir.name,
                    "tags": list(logger.tags),
                }
            },
        )

    def my_batches(epoch: int) -> list[tuple[int, bool]]:
        # Round-robin, the last round padded with zero-weight fillers: every process runs as many micro-batches
        # (so no rank waits on a collective for ever), and no batch is dropped or trained twice.
        return round_robin_batches(
            len(epoch_batches(epoch)), accelerator.num_processes, accelerator.process_index
        )

    if not epoch_batches(0):
        raise NothingToTrainError(
            f"{output_dir}: no training batch: the training data gave no example (all pairs tied, or too few "
            "records); nothing was trained"
        )
    steps_per_epoch = math.ceil(len(my_batches(0)) / settings.grad_accum)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    optimizer = build_optimizer(model, settings, new_parameter_prefixes)
    scheduler = get_scheduler(
        settings.scheduler,
        optimizer,
        num_warmup_steps=int(settings.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    _configure_deepspeed(accelerator, settings)
    # The scheduler is stepped by hand once per optimizer step, so it is not handed to `prepare`.
    model, optimizer = accelerator.prepare(model, optimizer)

    state = TrainerState(num_processes=accelerator.num_processes)
    metrics_file = output_dir / "metrics.jsonl"
    resume_from = latest_checkpoint(output_dir, STATE_FILE) if settings.resume != "never" else None
    refusal = None
    if accelerator.is_main_process and fingerprint is not None:
        try:
            check_fingerprint(
                output_dir,
                {**fingerprint, "num_processes": accelerator.num_processes},
                resuming=resume_from is not None,
                force=settings.resume == "force",
            )
        except RunFolderError as error:
            refusal = str(error)
    # The main process alone reads the fingerprint; every process must stop with it, not wait on it for ever.
    refusal = _from_main(accelerator, refusal)
    if refusal is not None:
        raise RunFolderError(refusal)
    if resume_from is not None:
        state = TrainerState(**json.loads((resume_from / STATE_FILE).read_text()))
        if (state.num_processes or 1) != accelerator.num_processes:
            # Each process's place in the epoch (batch_in_epoch) and random state belong to that layout.
            raise RunFolderError(
                f"{resume_from}: written by a run of {state.num_processes or 1} process(es), this run has "
                f"{accelerator.num_processes}: resume it with the same number (accelerate launch --num_processes "
                f"{state.num_processes or 1}), or start a new run (another run_id)"
            )
        _load_state(accelerator, resume_from)
        scheduler.load_state_dict(torch.load(resume_from / "scheduler.pt", weights_only=True))
        log.info(
            "resumed from %s at epoch %d, batch %d, step %d",
            resume_from,
            state.epoch,
            state.batch_in_epoch,
            state.global_step,
        )
    if accelerator.is_main_process:
        keep_metrics_up_to(metrics_file, state.global_step)

    def save_last() -> None:
        # Every process writes its part into the pending folder; only then does the main one publish it.
        folder = pending_checkpoint(output_dir, state.global_step)
        if accelerator.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(folder))
        if accelerator.is_main_process:
            torch.save(scheduler.state_dict(), folder / "scheduler.pt")
            write_json_atomic(folder / STATE_FILE, asdict(state))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            publish_checkpoint(output_dir, state.global_step, checkpoint_hook)
        accelerator.wait_for_everyone()

    def record(metrics: dict[str, Any]) -> None:
        accelerator.log(metrics, step=state.global_step)
        if accelerator.is_main_process:
            with metrics_file.open("a") as handle:
                handle.write(json.dumps({"step": state.global_step, **metrics}) + "\n")

    bar = tqdm(
        total=total_steps,
        initial=state.global_step,
        desc="train",
        unit="step",
        disable=not (settings.show_progress and accelerator.is_local_main_process),
    )
    running: list[float] = []
    summary_batches: list[tuple[int, int]] = []  # (epoch, batch index) this process trained on
    last_loss = float("nan")
    done = state.global_step >= total_steps
    started = time.perf_counter()
    while state.epoch < settings.epochs and not done:
        batches, mine = epoch_batches(state.epoch), my_batches(state.epoch)
        if (
            accelerator.is_main_process
            and state.batch_in_epoch == 0
            and len(batches) % accelerator.num_processes
        ):
            log.info(
                "epoch %d: %d micro-batches over %d processes: %d process(es) end the epoch with a zero-weight "
                "filler (trains nothing, keeps the processes in step)",
                state.epoch,
                len(batches),
                accelerator.num_processes,
                accelerator.num_processes - len(batches) % accelerator.num_processes,
            )
        model.train()
        for index in range(state.batch_in_epoch, len(mine)):
            batch_index, filler = mine[index]
            batch = {k: v.to(accelerator.device) for k, v in batches[batch_index].items()}
            with accelerator.accumulate(model):
                loss, logs = loss_fn(model, batch)
                # A filler still runs forward and backward (the gradient all-reduce needs every process) but
                # adds nothing: the gradient is the real batches' over the number of processes.
                accelerator.backward(loss * 0.0 if filler else loss)
                if accelerator.sync_gradients and settings.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            if not filler:
                running.append(loss.item())
                summary_batches.append((state.epoch, batch_index))
            state.batch_in_epoch = index + 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state.global_step += 1
            bar.update(1)
            last_loss = sum(running) / len(running) if running else last_loss
            bar.set_postfix(loss=f"{last_loss:.4f}")
            if state.global_step % settings.log_every_steps == 0:
                record(
                    {
                        "train/loss": last_loss,
                        "train/lr": scheduler.get_last_lr()[0],
                        "epoch": state.epoch,
                        **{f"train/{k}": v for k, v in logs.items()},
                    }
                )
                running = []
            if state.global_step % settings.save_every_steps == 0:
                save_last()
            if state.global_step >= total_steps:
                done = True
                break
        finished_epoch = state.epoch
        state.epoch += 1
        state.batch_in_epoch = 0
        last_epoch = done or state.epoch >= settings.epochs
        if evaluate is not None and (state.epoch % settings.eval_every_epochs == 0 or last_epoch):
            _validate(
                accelerator, model, evaluate, save_model, settings, state, finished_epoch, output_dir, record
            )
        save_last()
    bar.close()
    if evaluate is None and save_model is not None:
        _save_best(accelerator, model, save_model, output_dir)
    summary = {
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "global_step": state.global_step,
        "history": state.history,
        "train/loss": last_loss,
        "train_seconds": time.perf_counter() - started,
        "num_processes": accelerator.num_processes,
        "trained_batches": summary_batches,
    }
    # Trackers end here, but not the process group (as `end_training` would): the evaluation after training
    # shards its records over the same processes. It ends when the processes exit.
    for tracker in accelerator.trackers:
        tracker.finish()
    return summary


def _validate(
    accelerator: Accelerator,
    model: nn.Module,
    evaluate: Callable[[nn.Module], dict[str, float]],
    save_model: Callable[[nn.Module, Path], None] | None,
    settings: TrainSettings,
    state: TrainerState,
    epoch: int,
    output_dir: Path,
    record: Callable[[dict[str, Any]], None],
) -> None:
    """Validate on every process (`evaluate` shards its records, `blender.distributed.map_sharded`) and keep
    the checkpoint if it is the best so far; every process takes the main one's metrics, so all agree."""
    accelerator.wait_for_everyone()
    zero3 = _is_zero3(accelerator)
    # Under ZeRO-3 each forward gathers every layer from all processes, so all run all the records in step.
    with lockstep() if zero3 else contextlib.nullcontext():
        metrics = evaluate(accelerator.unwrap_model(model))
    metrics = _from_main(accelerator, metrics)
    if settings.best_metric not in metrics:
        raise KeyError(f"trainer.best_metric={settings.best_metric!r} is not among {sorted(metrics)}")
    value = float(metrics[settings.best_metric])
    improved = _is_better(value, state.best_value, settings.best_mode)
    if improved:
        state.best_value, state.best_epoch = value, epoch
        if save_model is not None:
            _save_best(accelerator, model, save_model, output_dir)
    state.history.append({"epoch": epoch, "step": state.global_step, **metrics})
    record({**metrics, "epoch": epoch})
    if accelerator.is_main_process:
        log.info(
            "epoch %d: %s%s",
            epoch,
            ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
            " (best so far, saved)" if improved else "",
        )
    accelerator.wait_for_everyone()


def _is_zero3(accelerator: Accelerator) -> bool:
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin.zero_stage == 3


def _save_best(
    accelerator: Accelerator,
    model: nn.Module,
    save_model: Callable[[nn.Module, Path], None],
    output_dir: Path,
) -> None:
    """Write `<output_dir>/best` from the main process; under ZeRO-3 every process first gathers the full weights
    (a collective), so the folder holds the whole model, loadable by one plain process."""
    unwrapped = accelerator.unwrap_model(model)
    if _is_zero3(accelerator):
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=None)
    else:
        gathered = contextlib.nullcontext()
    with gathered:
        if accelerator.is_main_process:
            write_dir_atomic(output_dir / "best", lambda d: save_model(unwrapped, d))
    accelerator.wait_for_everyone()


def _from_main(accelerator: Accelerator, value: Any) -> Any:
    """The main process's `value` on every process (a no-op in one process)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def _launch_layout() -> dict[str, Any]:
    """Accelerator arguments for a launched run without a GPU, which accelerate does not work out alone.

    DDP (`conf/accelerate/multi_cpu.yaml`, spawned by torchrun as multi_gpu.yaml is): `cpu=True` makes it
    MULTI_CPU over gloo. DeepSpeed (`DS_ACCELERATOR=cpu`): accelerate leaves the backend unset and then counts one
    process however many were launched, so gloo is named (what DeepSpeed falls back to without oneCCL).
    """
    if torch.cuda.is_available():
        return {}
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return {"kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}
    return {"cpu": True}


def _configure_deepspeed(accelerator: Accelerator, settings: TrainSettings) -> None:
    """The DeepSpeed settings accelerate would take from a dataloader, which this loop does not hand it."""
    plugin = accelerator.state.deepspeed_plugin
    if accelerator.distributed_type != DistributedType.DEEPSPEED or plugin is None:
        return
    config = plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = settings.batch_size
    config["train_batch_size"] = settings.batch_size * settings.grad_accum * accelerator.num_processes
    offload = config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    if offload not in (None, "none"):
        # Our AdamW keeps its param groups (head_lr, no decay on norms); DeepSpeed's fused CPU Adam would need
        # its C++ op built (DS_BUILD_OPS=0 here). torch's AdamW steps the offloaded fp32 partitions correctly.
        config["zero_force_ds_cpu_optimizer"] = False


def _load_state(accelerator: Accelerator, folder: Path) -> None:
    """`accelerator.load_state`, saying as a warning (accelerate says it at INFO) when the random state is refused:
    the run then continues, but its dropout no longer matches an uninterrupted run's."""
    messages: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    source = logging.getLogger("accelerate.checkpointing")
    handler, level = Catch(logging.INFO), source.level
    source.addHandler(handler)
    source.setLevel(logging.INFO)
    try:
        accelerator.load_state(str(folder))
    finally:
        source.removeHandler(handler)
        source.setLevel(level)
    if any("Could not load random states" in m for m in messages):
        log.warning(
            "%s: its random state (random_states_*.pkl) could not be restored: training continues, but dropout and "
            "sampling no longer repeat an uninterrupted run exactly",
            folder,
        )
