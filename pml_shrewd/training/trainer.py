"""An accelerate-based trainer for SHREWD / SHRED hashing models."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import SampleView, build_datasets, class_balanced_order, collate_skipping, semantic_distance_for
from ..losses import PML_BASELINES
from ..models import HashingModel, create_hashing_model
from .config import TrainConfig

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


def build_objective(config: TrainConfig, provider, model: HashingModel):
    """The PML loss of ``config.variant`` (see :class:`TrainConfig`): SHREWD's family, or one
    of PML's own losses on class labels for the baseline variants.

    ``provider`` gives the semantic distances; with ``config.semantic_power != 1`` the loss
    trains on their power (:class:`~pml_shrewd.semantic_distances.PowerDistance`).
    """
    from ..losses import SemanticDistanceLoss, SHREDLoss, pml_baseline_loss
    from ..regularizers import EmpiricalKLRegularizer
    from ..semantic_distances import PowerDistance

    if config.variant in PML_BASELINES:
        return pml_baseline_loss(config.variant)
    if config.semantic_power != 1.0 and provider is not None:
        provider = PowerDistance(provider, config.semantic_power)

    # L_sim's settings, the same for both loss classes.
    sim_kwargs = dict(gamma=config.gamma, rho=config.rho, balance_levels=config.balance_levels)
    if config.uses_classifier:
        return SHREDLoss(
            provider if config.variant == "shred" else None,
            num_classes=model.num_classes,
            embedding_size=model.num_bits,
            lambda_sim=1.0 if config.variant == "shred" else 0.0,
            lambda_kl=0.0 if config.variant == "cls" else config.lambda_kl,
            lambda_cls=config.lambda_cls,
            classifier=model.classifier,
            alpha=config.alpha,
            beta=config.beta,
            **sim_kwargs,
        )
    kwargs: dict[str, Any] = {}
    if config.variant == "shrewd" and config.lambda_kl > 0:
        kwargs = dict(
            embedding_regularizer=EmpiricalKLRegularizer(alpha=config.alpha, beta=config.beta),
            embedding_reg_weight=config.lambda_kl,
        )
    return SemanticDistanceLoss(provider, **sim_kwargs, **kwargs)


class Trainer:
    """Train a :class:`HashingModel` with SHREWD / SHRED losses on CPU, one or many GPUs.

    Built on one ``accelerate.Accelerator``: the same code runs as ``python ...`` or
    ``accelerate launch ...`` (multi-GPU / multi-node). The global batch
    (``config.batch_size``) is split across processes and the codes are gathered
    back (:func:`gather_with_grad`) so the losses see every pair. Data order is a
    permutation seeded by ``(seed, epoch)``; checkpoints (model, optimizer,
    scheduler, RNG states, epoch and step) are written to a temporary folder and
    renamed, and ``checkpoints/last`` is swapped atomically, so resuming
    (``fit(resume=True)``) continues exactly where the run stopped (bit-exact with
    ``num_workers=0``; with workers, augmentation RNG is exact at epoch boundaries).
    Writes ``log.jsonl`` (one line per epoch), ``metrics.json``, ``model.pt`` and
    ``config.json`` to ``output_dir``.

    Unreadable images are dropped from their batch and counted (``skipped_images``).
    A global batch left with fewer than two readable images on some process (the
    pairwise loss and BatchNorm need two) is skipped by every process together, the
    decision taken on the all-gathered counts, and counted (``skipped_batches``,
    ``skipped_batch_images``: readable images of skipped batches); its step still
    advances the learning-rate schedule and the data position.

    Example::

        trainer = Trainer(TrainConfig(data_path="examples/data/cifar10-sample", epochs=5))
        metrics = trainer.fit()          # {'mAP': ..., 'mAHP@250': ..., ...}
        codes = trainer.encode(trainer.test_set)
    """

    def __init__(self, config: TrainConfig, accelerator=None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config = config
        if accelerator is None:
            # The scheduler counts global steps: do not let accelerate step it once per process.
            accelerator = Accelerator(
                mixed_precision=self._resolve_precision(config.mixed_precision),
                step_scheduler_with_optimizer=False,
            )
        self.accelerator = accelerator

        def build_model(num_classes: int) -> HashingModel:
            set_seed(config.seed)  # the same initialisation with or without a classifier
            return HashingModel(
                config.backbone,
                num_bits=config.num_bits,
                pretrained=config.pretrained,
                pretrained_file=config.pretrained_file,
                small_images=config.small_images,
                image_size=config.image_size,
                hidden_dim=config.hidden_dim,
                batch_norm=config.batch_norm,
                num_classes=num_classes,
            )

        model = build_model(0)  # the classifier waits for the data set's number of classes
        self.train_set, self.test_set = build_datasets(
            config.dataset,
            config.data_path,
            model.transform(train=True),
            model.transform(train=False),
            download=config.download,
            test_fraction=config.test_fraction,
            seed=config.seed,
            max_train_samples=config.max_train_samples,
            max_test_samples=config.max_test_samples,
        )
        captioned = getattr(self.train_set, "captions", None) is not None
        if captioned and (config.uses_classifier or config.variant in PML_BASELINES):
            raise ValueError(f"variant {config.variant!r} needs class labels; captioned data has none")
        if config.uses_classifier:
            model = build_model(self.train_set.num_labels)
        if config.samples_per_class and captioned:
            raise ValueError("samples_per_class needs class labels; captioned data has none")
        self.semantic_distance = semantic_distance_for(
            self.train_set, config.semantic, config.sentence_model, config.hierarchy_file
        )
        self.loss_fn = build_objective(config, self.semantic_distance, model)
        if config.freeze_backbone:
            model.backbone.requires_grad_(False)

        world = accelerator.num_processes
        if config.batch_size % world:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} processes")
        self.local_batch_size = config.batch_size // world
        self.steps_per_epoch = len(self.train_set) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training set has {len(self.train_set)} samples, fewer than one batch of {config.batch_size}"
            )
        self.total_steps = self.steps_per_epoch * config.epochs

        optimizer = self._build_optimizer(model)
        scheduler = self._build_scheduler(optimizer)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.epoch = 0  # completed epochs
        self.step = 0  # completed global steps
        self.bad_samples: set[str] = set()
        self.skipped_batches = 0  # global batches skipped for lack of readable images
        self.skipped_batch_images = 0  # readable images (all processes) of those batches
        self.output_dir = config.output_dir
        self.checkpoint_root = os.path.join(self.output_dir, "checkpoints")

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _resolve_precision(mode: str) -> str:
        if mode != "auto":
            return mode
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"

    def _build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        params += [p for p in self.loss_fn.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=c.momentum > 0
            )
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    def _build_scheduler(self, optimizer):
        c, total = self.config, self.total_steps
        warm = min(c.warmup_steps, total)

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
        """This process's sample indices for ``epoch``: a ``(seed, epoch)`` permutation (or, with
        ``samples_per_class``, a class-balanced order of the same length), cut into global
        batches (last partial batch dropped), each split across processes."""
        c, n = self.config, len(self.train_set)
        if c.samples_per_class:
            perm = class_balanced_order(self.train_set.targets, c.samples_per_class, n, seed=[c.seed, epoch])
        else:
            perm = np.random.RandomState([c.seed, epoch]).permutation(n)
        acc, b, lb = self.accelerator, c.batch_size, self.local_batch_size
        mine: list[int] = []
        for s in range(self.steps_per_epoch):
            start = s * b + acc.process_index * lb
            mine.extend(perm[start : start + lb].tolist())
        return mine

    def _loader(self, dataset, indices: list[int], batch_size: int, epoch: int = 0) -> DataLoader:
        c = self.config
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=indices,
            num_workers=c.num_workers,
            collate_fn=collate_skipping,
            pin_memory=self.accelerator.device.type == "cuda",
            # Worker seeds come from this generator: deterministic per epoch.
            generator=torch.Generator().manual_seed(c.seed * 100003 + epoch),
            persistent_workers=False,
        )

    def _note_bad(self, dataset, bad: torch.Tensor) -> None:
        for i in bad.tolist():
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
        if self.config.freeze_backbone:  # fixed features: BatchNorm statistics stay as loaded
            acc.unwrap_model(self.model).backbone.eval()
        with acc.autocast():
            codes = self.model(images)
        # Losses in float32: pairwise distances and logs are fragile in half precision.
        all_codes = gather_with_grad(acc, codes.float())
        all_labels = gather_with_grad(acc, labels)
        loss = self.loss_fn(all_codes, all_labels) * acc.num_processes
        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        if self.config.grad_clip:
            acc.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item() / acc.num_processes

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train (resuming from ``checkpoints/last`` if asked and present); returns final metrics."""
        from tqdm.auto import tqdm

        acc, c = self.accelerator, self.config
        if acc.is_main_process:
            os.makedirs(self.output_dir, exist_ok=True)
            c.save(os.path.join(self.output_dir, "train_config.json"))
        if resume and os.path.isdir(os.path.join(self.checkpoint_root, "last")):
            self.load_checkpoint(os.path.join(self.checkpoint_root, "last"))
        stop = False
        metrics: dict[str, Any] = {}
        start_time = time.time()
        while self.epoch < c.epochs and not stop:
            epoch = self.epoch
            skip = self.step - epoch * self.steps_per_epoch  # batches already done (mid-epoch resume)
            indices = self.epoch_indices(epoch)[skip * self.local_batch_size :]
            loader = self._loader(self.train_set, indices, self.local_batch_size, epoch)
            losses = []
            bar = tqdm(
                loader,
                total=self.steps_per_epoch - skip,
                desc=f"epoch {epoch + 1}/{c.epochs}",
                disable=not acc.is_local_main_process,
                leave=False,
            )
            for images, labels, bad in bar:
                self._note_bad(self.train_set, bad)
                sizes = self.batch_sizes(len(labels))  # the same list on every process: lockstep
                if min(sizes) < self.min_local_samples:
                    self.skip_step(sizes)
                else:
                    losses.append(self.train_step(images.to(acc.device), labels.to(acc.device)))
                self.step += 1
                bar.set_postfix(self._bar_stats(losses))
                if c.checkpoint_every_steps and self.step % c.checkpoint_every_steps == 0:
                    self.save_checkpoint()
                if c.max_steps is not None and self.step >= c.max_steps:
                    stop = True
                    break
            bar.close()
            finished_epoch = self.step == (epoch + 1) * self.steps_per_epoch
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
            last_epoch = self.epoch >= c.epochs or stop
            if c.eval_every and finished_epoch and self.epoch % c.eval_every == 0 and not last_epoch:
                record["metrics"] = self.evaluate()
            if finished_epoch and c.checkpoint_every and self.epoch % c.checkpoint_every == 0:
                self.save_checkpoint()
            self._log(record)
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
            "test_samples": len(self.test_set),
        }
        if acc.is_main_process:
            with open(os.path.join(self.output_dir, "metrics.json"), "w") as f:
                json.dump(final, f, indent=2)
            self._log({"final": final})
        acc.wait_for_everyone()
        return final

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
    @torch.no_grad()
    def encode(self, dataset, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous codes and labels of ``dataset`` (all processes' shards gathered, CPU)."""
        acc = self.accelerator
        n, world, rank = len(dataset), acc.num_processes, acc.process_index
        per = math.ceil(n / world)
        loader = self._loader(dataset, list(range(rank * per, min(n, (rank + 1) * per))), batch_size or 256)
        model = acc.unwrap_model(self.model)
        model.eval()
        codes, labels = [], []
        for images, y, bad in loader:
            self._note_bad(dataset, bad)
            if len(y) == 0:
                continue
            with acc.autocast():
                codes.append(model(images.to(acc.device)).float())
            labels.append(y.to(acc.device))
        z = torch.cat(codes) if codes else torch.empty(0, model.num_bits, device=acc.device)
        y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long, device=acc.device)
        if world > 1:
            z, y = gather_with_grad(acc, z), gather_with_grad(acc, y)
        return z.cpu(), y.cpu()

    def evaluate(self) -> dict[str, float]:
        """Retrieval metrics of test queries against the training set as database."""
        from ..retrieval import evaluate_codes

        c = self.config
        db_set = SampleView(self.train_set.base, self.train_set.indices, self.test_set.transform)
        if c.max_db_samples is not None and c.max_db_samples < len(db_set):
            keep = np.sort(np.random.RandomState(c.seed + 2).permutation(len(db_set))[: c.max_db_samples])
            db_set = SampleView(db_set.base, [db_set.indices[i] for i in keep], db_set.transform)
        q_codes, q_labels = self.encode(self.test_set)
        db_codes, db_labels = self.encode(db_set)
        if not self.accelerator.is_main_process:
            return {}
        k = min(c.hp_k, len(db_codes))
        metrics = evaluate_codes(
            q_codes, db_codes, q_labels, db_labels, semantic_distance=self.semantic_distance, k=k
        )
        return {key: float(v) for key, v in metrics.items()}

    # ------------------------------------------------------------------ checkpoints
    def save_model(self, directory: str) -> None:
        """Write ``model.pt`` (state dict) and ``config.json`` (architecture + classes)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            os.makedirs(directory, exist_ok=True)
            torch.save(model.state_dict(), os.path.join(directory, "model.pt"))
            info = {
                "model": model.config,
                "data_config": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config.items()
                },
                "classes": list(self.train_set.classes),
                "train": self.config.to_dict(),
            }
            with open(os.path.join(directory, "config.json"), "w") as f:
                json.dump(info, f, indent=2)

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
    """Rebuild a trained :class:`HashingModel` from a run folder or checkpoint folder.

    Example::

        model, info = load_trained_model("runs/shrewd")          # or runs/shrewd/checkpoints/last
        codes = model.eval()(images)
    """
    path = os.path.realpath(path)
    cfg_file, weights = os.path.join(path, "config.json"), os.path.join(path, "model.pt")
    if not (os.path.isfile(cfg_file) and os.path.isfile(weights)):
        raise FileNotFoundError(f"{path!r} holds no trained model (needs config.json and model.pt)")
    with open(cfg_file) as f:
        info = json.load(f)
    model = create_hashing_model(info["model"])
    model.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
    return model.eval(), info


__all__ = ["Trainer", "build_objective", "gather_with_grad", "load_trained_model"]
