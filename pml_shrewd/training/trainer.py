"""An accelerate trainer for hashing models, built from objects (as PML's trainers are).

``Trainer(model, loss_fn, train_set, test_set, config=...)`` trains whatever it is given:
a :class:`~pml_shrewd.models.HashingModel` on images, or a :class:`~pml_shrewd.models.HashHead`
on cached backbone features (:class:`~pml_shrewd.data.FeatureSamples`). ``Trainer.from_config``
(:mod:`.builders`) is the builder the CLI and the benchmarks use.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import FeatureSamples, SampleView, ShuffledEpochs, collate_skipping
from ..models import HashingModel
from .builders import default_num_workers, total_steps_of
from .config import TrainConfig
from .inference import encode_dataset

CHECKPOINT_STATE = "trainer_state.json"


def gather_with_grad(accelerator, x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all processes, keeping the gradient of the local part.

    Why: the pairwise loss and the KL estimate must see the *global* batch. The
    other processes' rows arrive as constants (as in PML's DistributedLossWrapper);
    each process back-propagates through its own rows, and DDP sums (averages) the
    parameter gradients, hence the ``* num_processes`` on the loss. Sizes may differ
    across processes (skipped images), so rows are padded, gathered and trimmed.
    A no-op with one process.
    """
    world = accelerator.num_processes
    if world == 1:
        return x
    sizes = accelerator.gather(torch.tensor([x.shape[0]], device=x.device)).tolist()
    padded = accelerator.pad_across_processes(x.detach().contiguous(), dim=0)
    gathered = accelerator.gather(padded)
    step = gathered.shape[0] // world
    parts = [gathered[r * step : r * step + sizes[r]] for r in range(world)]
    parts[accelerator.process_index] = x
    return torch.cat(parts, dim=0)


def resolve_precision(mode: str) -> str:
    """``"auto"``: bf16 (or fp16) on a GPU, full precision on the CPU."""
    if mode != "auto":
        return mode
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


class Trainer:
    """Train a hashing model with any PML-style loss on CPU, one or many GPUs.

    Built on one ``accelerate.Accelerator``: the same code runs as ``python ...`` or
    ``accelerate launch ...``. The global batch (``config.batch_size``) is split across
    processes and the codes are gathered back (:func:`gather_with_grad`) so the loss sees
    every pair. ``sampler(epoch)`` gives the epoch's order of ``train_set`` (default
    :class:`~pml_shrewd.data.ShuffledEpochs`: depends on ``(seed, epoch)`` only), cut into
    global batches (the last partial batch dropped). Checkpoints (model, loss parameters,
    optimizer, scheduler, RNG states, epoch and step) are written to a temporary folder and
    renamed, and ``checkpoints/last`` is swapped atomically, so resuming (``fit(resume=True)``)
    continues exactly where the run stopped (bit-exact with ``num_workers=0``).

    Args:
        model: maps a batch of ``train_set`` inputs to codes in ``[0, 1]^K``.
        loss_fn: called as ``loss_fn(codes, labels)`` (a PML loss, SHREWD's, a ``CrossBatchMemory``).
        train_set / test_set: data sets of ``(input, label)``; the test set gives the queries.
        config: the run's settings (steps, batch, optimiser, checkpoints, output folder).
        sampler: ``sampler(epoch) -> indices`` (e.g. :class:`~pml_shrewd.data.ClassBalancedEpochs`).
        evaluator: ``evaluator(trainer) -> metrics`` (default: none; ``from_config`` passes a
            :class:`~pml_shrewd.training.RetrievalEvaluator`).
        callbacks: objects with optional ``on_model(model)`` (called once with the unwrapped model
            before the optimizer is built and the model is wrapped, e.g. to freeze parameters),
            ``on_step_start(trainer)`` / ``on_epoch_end(trainer, record)``.
        export_model: what :meth:`save_model` writes (default ``model``; the whole
            ``HashingModel`` when ``model`` is its head on cached features).
        optimizer / scheduler: built from ``config`` when not given.

    Unreadable images are dropped from their batch and counted (``skipped_images``). A global
    batch left with fewer than two readable images on some process is skipped by every
    process together and counted (``skipped_batches``); its step still advances the schedule.
    Writes ``log.jsonl`` (one line per epoch), ``metrics.json``, ``model.pt`` and ``config.json``.

    Example::

        trainer = Trainer.from_config(TrainConfig(data_path="examples/data/cifar10-sample", epochs=5))
        metrics = trainer.fit()          # {'mAP': ..., 'mAHP@k': ..., 'k': 250, ...}
        head_trainer = Trainer(head, build_objective("shrewd", tree, embedding_size=64),
                               FeatureSamples(x, y, classes), test_features, config=cfg)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: torch.nn.Module,
        train_set,
        test_set=None,
        *,
        config: TrainConfig | None = None,
        database_set=None,
        sampler: Callable[[int], Sequence[int]] | None = None,
        evaluator: Callable[[Trainer], dict[str, Any]] | None = None,
        callbacks: Sequence[Any] = (),
        export_model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler=None,
        accelerator=None,
    ) -> None:
        from accelerate import Accelerator

        self.config = config = config if config is not None else TrainConfig()
        if accelerator is None:
            # The scheduler counts global steps: do not let accelerate step it once per process.
            accelerator = Accelerator(
                mixed_precision=resolve_precision(config.mixed_precision), step_scheduler_with_optimizer=False
            )
        self.accelerator = accelerator
        self.train_set, self.test_set = train_set, test_set
        self.database_set = database_set if database_set is not None else train_set
        self.sampler = sampler or ShuffledEpochs(len(train_set), seed=config.seed)
        if config.num_workers is not None:
            self.num_workers = config.num_workers
        else:  # in-memory features need no loader processes; images get the cores but one
            self.num_workers = 0 if isinstance(train_set, FeatureSamples) else default_num_workers()
        self.evaluator, self.callbacks = evaluator, list(callbacks)

        world = accelerator.num_processes
        if config.batch_size % world:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} processes")
        self.local_batch_size = config.batch_size // world
        self.steps_per_epoch = len(train_set) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training set has {len(train_set)} samples, fewer than one batch of {config.batch_size}"
            )
        # A step budget takes as many epochs as it needs, the last one cut short.
        self.total_steps = total_steps_of(config, len(train_set))
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

        # The loss stays outside DDP (most losses have no parameters, which DDP refuses); its
        # state (SHRED's classifier, a cross-batch memory) is checkpointed with the rest.
        self.loss_fn = loss_fn.to(accelerator.device)
        self._loss_params = [p for p in loss_fn.parameters() if p.requires_grad]
        if loss_fn.state_dict():
            accelerator.register_for_checkpointing(loss_fn)
        for callback in self.callbacks:
            if hasattr(callback, "on_model"):  # before DDP, which fixes the parameters that train
                callback.on_model(model)
        optimizer = optimizer or self._build_optimizer(model, loss_fn)
        scheduler = scheduler or self._build_scheduler(optimizer)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.export_model = export_model
        self.epoch = 0  # completed epochs
        self.step = 0  # completed global steps
        # Images left out when cached features were extracted count as skipped from the start.
        self.bad_samples: set[str] = {
            name for part in (train_set, test_set, self.database_set) for name in getattr(part, "skipped", ())
        }
        self.skipped_batches = 0  # global batches skipped for lack of readable images
        self.skipped_batch_images = 0  # readable images (all processes) of those batches
        self.output_dir = config.output_dir
        self.checkpoint_root = os.path.join(self.output_dir, "checkpoints")

    @classmethod
    def from_config(cls, config: TrainConfig, accelerator=None) -> Trainer:
        """Model, data, semantic distances, loss, sampler and evaluator as ``config`` says
        (:func:`~pml_shrewd.training.builders.build_run`)."""
        from .builders import build_run

        return cls(**build_run(config), config=config, accelerator=accelerator)

    # ------------------------------------------------------------------ setup
    def _build_optimizer(self, model: torch.nn.Module, loss_fn: torch.nn.Module) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        params += [p for p in loss_fn.parameters() if p.requires_grad]
        if c.backbone_lr_scale != 1.0:
            # The trained backbone layers (fine-tuning mode's tail, or a whole unfrozen backbone)
            # get lr * backbone_lr_scale; the head and the loss's parameters get lr.
            backbone = getattr(model, "tail", None) or getattr(model, "backbone", None)
            slow = {id(p) for p in backbone.parameters()} if backbone is not None else set()
            if not slow.intersection(map(id, params)):
                raise ValueError(
                    "backbone_lr_scale is set but the trained model has no trained backbone layers"
                )
            params = [
                {"params": [p for p in params if id(p) not in slow]},
                {"params": [p for p in params if id(p) in slow], "lr": c.lr * c.backbone_lr_scale},
            ]
        # foreach: the same per-tensor update as torch's CPU default (a Python loop over the
        # parameters), bitwise, in a few multi-tensor calls: about 2.5x faster on CPUs.
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                params,
                lr=c.lr,
                momentum=c.momentum,
                weight_decay=c.weight_decay,
                nesterov=c.momentum > 0,
                foreach=True,
            )
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, foreach=True)
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, foreach=True)

    def _build_scheduler(self, optimizer):
        c, total = self.config, self.total_steps
        warm = c.warmup_steps
        if warm > total // 10:
            # A warm-up longer than a tenth of the run would leave no room for the decay
            # (1,000 warm-up steps of a 12-step run ramp the whole run).
            warnings.warn(
                f"warmup_steps {warm} is over a tenth of the run's {total} steps; using {total // 10}",
                stacklevel=3,
            )
            warm = total // 10
        if c.scheduler == "cosine" and warm == 0:
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if c.scheduler == "cosine":
                return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            if c.scheduler == "step":  # /10 at 50% and 75% of training
                return 0.1 ** sum(step >= total * f for f in (0.5, 0.75))
            return 1.0

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    # ------------------------------------------------------------------ data
    def epoch_indices(self, epoch: int) -> list[int]:
        """This process's sample indices for ``epoch``: ``sampler(epoch)`` cut into global
        batches (last partial batch dropped), each split across processes."""
        perm = np.asarray(self.sampler(epoch))
        acc, b, lb = self.accelerator, self.config.batch_size, self.local_batch_size
        mine: list[int] = []
        for s in range(min(self.steps_per_epoch, len(perm) // b)):
            start = s * b + acc.process_index * lb
            mine.extend(perm[start : start + lb].tolist())
        return mine

    def _loader(self, dataset, indices: list[int], batch_size: int, epoch: int = 0) -> DataLoader:
        c = self.config
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=indices,
            num_workers=self.num_workers,
            collate_fn=collate_skipping,
            pin_memory=self.accelerator.device.type == "cuda",
            # Worker seeds come from this generator: deterministic per epoch.
            generator=torch.Generator().manual_seed(c.seed * 100003 + epoch),
            persistent_workers=False,
        )

    def _note_bad(self, dataset, bad) -> None:
        for i in bad.tolist() if torch.is_tensor(bad) else bad:
            self.bad_samples.add(dataset.sample_name(i))

    def _sync_bad_samples(self) -> None:
        """Union of every process's unreadable samples (call on all processes)."""
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            self.bad_samples = set(gather_object(sorted(self.bad_samples)))

    def batch_sizes(self, num_local: int) -> list[int]:
        """Readable samples of the current global batch on every process (one all-gather)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return [num_local]
        return acc.gather(torch.tensor([num_local], device=acc.device)).tolist()

    @property
    def min_local_samples(self) -> int:
        """Readable samples every process needs for a step: 2 (pairs, BatchNorm), or 1 if the
        configured per-process batch is 1."""
        return min(2, self.local_batch_size)

    def skip_step(self, sizes: list[int]) -> None:
        """Count a skipped global batch; the schedule moves on as if it had been trained."""
        self.skipped_batches += 1
        self.skipped_batch_images += sum(sizes)
        with warnings.catch_warnings():  # no optimizer.step() yet when the very first batch is skipped
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()

    # ------------------------------------------------------------------ training
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """One optimisation step on this process's part of a global batch."""
        acc = self.accelerator
        self.model.train()
        model = acc.unwrap_model(self.model)
        if self.config.freeze_backbone and hasattr(model, "backbone"):
            model.backbone.eval()  # fixed features: BatchNorm statistics stay as loaded
        for callback in self.callbacks:
            if hasattr(callback, "on_step_start"):
                callback.on_step_start(self)
        with acc.autocast():
            codes = self.model(images)
        # Losses in float32: pairwise distances and logs are fragile in half precision.
        all_codes = gather_with_grad(acc, codes.float())
        all_labels = gather_with_grad(acc, labels)
        loss = self.loss_fn(all_codes, all_labels) * acc.num_processes
        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        if acc.num_processes > 1:
            # Every process computed the same global loss, so the loss's own parameters got the
            # same gradient times num_processes (DDP averages only the model's).
            for p in self._loss_params:
                if p.grad is not None:
                    p.grad.div_(acc.num_processes)
        if self.config.grad_clip:
            acc.clip_grad_norm_([*self.model.parameters(), *self._loss_params], self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item() / acc.num_processes

    def _resume(self) -> None:
        last = os.path.join(self.checkpoint_root, "last")
        if not os.path.isdir(last):
            raise FileNotFoundError(
                f"resume: no checkpoint at {last!r}; run without --resume to start fresh "
                "(or --output-dir elsewhere)"
            )
        self.load_checkpoint(last)
        if self.accelerator.is_main_process:
            print(
                f"resuming from {os.path.realpath(last)} at epoch {self.epoch} step {self.step}", flush=True
            )

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train (resuming from ``checkpoints/last`` if asked: it must exist); returns final metrics."""
        from tqdm.auto import tqdm

        acc, c = self.accelerator, self.config
        if acc.is_main_process:
            os.makedirs(self.output_dir, exist_ok=True)
            c.save(os.path.join(self.output_dir, "train_config.json"))
        if resume:
            self._resume()
        stop = self.step >= self.total_steps
        start_time = time.time()
        while self.epoch < self.num_epochs and not stop:
            epoch = self.epoch
            skip = self.step - epoch * self.steps_per_epoch  # batches already done (mid-epoch resume)
            todo = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch) - skip
            indices = self.epoch_indices(epoch)[skip * self.local_batch_size :][
                : todo * self.local_batch_size
            ]
            loader = self._loader(self.train_set, indices, self.local_batch_size, epoch)
            losses = []
            bar = tqdm(
                loader,
                total=todo,
                desc=f"epoch {epoch + 1}/{self.num_epochs}",
                disable=not acc.is_local_main_process,
                leave=False,
                mininterval=2,
            )
            shown = (0, 0)
            for images, labels, bad in bar:
                self._note_bad(self.train_set, bad)
                sizes = self.batch_sizes(len(labels))  # the same list on every process: lockstep
                if min(sizes) < self.min_local_samples:
                    self.skip_step(sizes)
                else:
                    losses.append(self.train_step(images.to(acc.device), labels.to(acc.device)))
                self.step += 1
                # Redrawn at once when a skip count changes; otherwise at tqdm's own pace.
                counts = (len(self.bad_samples), self.skipped_batches)
                bar.set_postfix(self._bar_stats(losses), refresh=counts != shown)
                shown = counts
                if c.checkpoint_every_steps and self.step % c.checkpoint_every_steps == 0:
                    self.save_checkpoint()
                if self.step >= self.total_steps or (c.max_steps is not None and self.step >= c.max_steps):
                    stop = True
                    break
            bar.close()
            finished_epoch = self.step == (epoch + 1) * self.steps_per_epoch or self.step >= self.total_steps
            if finished_epoch:
                self.epoch += 1
            self._sync_bad_samples()
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": self.step,
                "train_loss": float(np.mean(losses)) if losses else None,
                "lr": self.scheduler.get_last_lr()[0],
                **self._skip_counts(),
                "time_s": round(time.time() - start_time, 2),
            }
            last_epoch = self.epoch >= self.num_epochs or stop
            if c.eval_every and finished_epoch and self.epoch % c.eval_every == 0 and not last_epoch:
                record["metrics"] = self.evaluate()
            if finished_epoch and c.checkpoint_every and self.epoch % c.checkpoint_every == 0:
                self.save_checkpoint()
            for callback in self.callbacks:
                if hasattr(callback, "on_epoch_end"):
                    callback.on_epoch_end(self, record)
            self._log(record)
            self._print_epoch(record)
        metrics = self.evaluate()
        self.save_model(self.output_dir)
        self._sync_bad_samples()
        missing = list(getattr(self.train_set, "missing", []) or [])
        final = {
            **metrics,
            "epochs_completed": self.epoch,
            "steps": self.step,
            **self._skip_counts(),
            "skipped_examples": sorted(self.bad_samples)[:20],
            "missing_images": len(missing),
            "missing_examples": missing[:20],
            "train_samples": len(self.train_set),
            "test_samples": len(self.test_set) if self.test_set is not None else 0,
        }
        if acc.is_main_process:
            with open(os.path.join(self.output_dir, "metrics.json"), "w") as f:
                json.dump(final, f, indent=2)
            self._log({"final": final})
        acc.wait_for_everyone()
        return final

    def _print_epoch(self, record: dict[str, Any]) -> None:
        """One line per epoch on the console (the full record goes to log.jsonl)."""
        if not self.accelerator.is_main_process or not self.config.print_epochs:
            return
        loss = record["train_loss"]
        line = (
            f"epoch {record['epoch']}/{self.num_epochs}  step {record['step']}  "
            f"loss {'n/a' if loss is None else f'{loss:.4f}'}  lr {record['lr']:.3g}  {record['time_s']:.0f}s"
        )
        metrics = record.get("metrics") or {}
        line += "".join(f"  {key} {metrics[key]:.4f}" for key in ("mAP", "mAHP@k") if key in metrics)
        print(line, flush=True)

    def _skip_counts(self) -> dict[str, int]:
        return {
            "skipped_images": len(self.bad_samples),
            "skipped_batches": self.skipped_batches,
            "skipped_batch_images": self.skipped_batch_images,
        }

    def _bar_stats(self, losses: list[float]) -> dict[str, str | int]:
        """Progress-bar postfix: last loss, and the skip counts once there are any (this process's images)."""
        stats: dict[str, str | int] = {"loss": f"{losses[-1]:.4f}"} if losses else {}
        if self.bad_samples:
            stats["skipped_images"] = len(self.bad_samples)
        if self.skipped_batches:
            stats["skipped_batches"] = self.skipped_batches
        return stats

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with open(os.path.join(self.output_dir, "log.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ evaluation
    def encode(self, dataset, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous codes and labels of ``dataset`` (all processes' shards gathered, CPU)."""
        acc = self.accelerator
        n, world, rank = len(dataset), acc.num_processes, acc.process_index
        per = math.ceil(n / world)
        first = rank * per
        # This process's share (positions in the shard are what encode_dataset reports).
        shard = (
            dataset
            if world == 1
            else SampleView(dataset, range(first, min(n, first + per)), dataset.transform)
        )
        model = acc.unwrap_model(self.model)
        with acc.autocast():
            z, y, kept = encode_dataset(
                model,
                shard,
                batch_size or 256,
                device=acc.device,
                num_workers=self.num_workers,
                allow_empty=True,
            )
        readable = set(kept)
        self._note_bad(dataset, [first + i for i in range(len(shard)) if i not in readable])
        z, y = z.to(acc.device).float(), y.to(acc.device)
        if world > 1:
            z, y = gather_with_grad(acc, z), gather_with_grad(acc, y)
        return z.cpu(), y.cpu()

    def evaluate(self) -> dict[str, Any]:
        """The evaluator's metrics (``{}`` without an evaluator, and on processes other than the main one)."""
        if self.evaluator is None:
            return {}
        metrics = self.evaluator(self)
        return metrics if self.accelerator.is_main_process else {}

    # ------------------------------------------------------------------ checkpoints
    def save_model(self, directory: str) -> None:
        """Write the model in :meth:`HashingModel.save_pretrained`'s layout (``config.json`` with the
        architecture, classes and this run's settings; ``model.pt``)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            model = self.export_model if self.export_model is not None else acc.unwrap_model(self.model)
            classes = list(getattr(self.train_set, "classes", []) or [])
            if not hasattr(model, "save_pretrained"):  # any other module: its weights and the settings
                os.makedirs(directory, exist_ok=True)
                torch.save(model.state_dict(), os.path.join(directory, "model.pt"))
                with open(os.path.join(directory, "config.json"), "w") as f:
                    json.dump({"classes": classes, "train": self.config.to_dict()}, f, indent=2)
                return
            # model.pt, not model.safetensors: accelerate's save_state writes that name in checkpoints.
            model.save_pretrained(
                directory, classes=classes, extra={"train": self.config.to_dict()}, weights_name="model.pt"
            )

    def save_checkpoint(self) -> str:
        """Write a resumable checkpoint atomically; returns its folder.

        The state goes to ``step-XXXXXXXX.tmp`` first, which is renamed once complete;
        then the ``last`` symlink is replaced with ``os.replace`` (atomic), so a crash
        at any moment leaves ``last`` pointing at a complete checkpoint.
        """
        acc = self.accelerator
        name = f"step-{self.step:08d}"
        final = os.path.join(self.checkpoint_root, name)
        tmp = final + ".tmp"
        self._sync_bad_samples()
        if acc.is_main_process:
            os.makedirs(self.checkpoint_root, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(tmp)  # model, optimizer, scheduler, RNG states of every process
        self.save_model(tmp)
        if acc.is_main_process:
            state = {
                "epoch": self.epoch,
                "step": self.step,
                "bad_samples": sorted(self.bad_samples),
                "skipped_batches": self.skipped_batches,
                "skipped_batch_images": self.skipped_batch_images,
            }
            with open(os.path.join(tmp, CHECKPOINT_STATE), "w") as f:
                json.dump(state, f)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            link = os.path.join(self.checkpoint_root, "last")
            tmp_link = link + ".tmp"
            if os.path.lexists(tmp_link):
                os.remove(tmp_link)
            os.symlink(name, tmp_link)
            os.replace(tmp_link, link)
            self._prune_checkpoints(keep=name)
        acc.wait_for_everyone()
        return final

    def _prune_checkpoints(self, keep: str) -> None:
        names = sorted(
            d for d in os.listdir(self.checkpoint_root) if d.startswith("step-") and not d.endswith(".tmp")
        )
        for old in names[: max(0, len(names) - self.config.keep_checkpoints)]:
            if old != keep:
                shutil.rmtree(os.path.join(self.checkpoint_root, old), ignore_errors=True)

    def load_checkpoint(self, path: str) -> None:
        """Restore model, optimizer, scheduler, RNG states and counters from ``path``."""
        path = os.path.realpath(path)
        state_file = os.path.join(path, CHECKPOINT_STATE)
        if not os.path.isfile(state_file):
            raise FileNotFoundError(f"{path!r} is not a complete checkpoint (no {CHECKPOINT_STATE})")
        self.accelerator.load_state(path)
        with open(state_file) as f:
            state = json.load(f)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.bad_samples = set(state.get("bad_samples", []))
        self.skipped_batches = int(state.get("skipped_batches", 0))
        self.skipped_batch_images = int(state.get("skipped_batch_images", 0))


def load_trained_model(path: str, map_location: str | torch.device = "cpu") -> tuple[HashingModel, dict]:
    """Rebuild a trained :class:`HashingModel` from a run folder or checkpoint folder
    (:meth:`HashingModel.from_pretrained`); returns the model (eval mode) and its ``config.json``.

    Example::

        model, info = load_trained_model("runs/shrewd")          # or runs/shrewd/checkpoints/last
        codes = model.eval()(images)
    """
    model = HashingModel.from_pretrained(path, map_location=map_location)
    return model, model.pretrained_info


__all__ = ["Trainer", "gather_with_grad", "load_trained_model", "resolve_precision"]
