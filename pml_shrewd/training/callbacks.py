"""Trainer callbacks: small objects with ``on_step_start(trainer)`` / ``on_epoch_end(trainer, record)``."""

from __future__ import annotations

from torch import nn

from ..losses.variants import inner_loss
from ..models.hash_head import HashHead


class KLWarmup:
    """Ramp the loss's ``embedding_reg_weight`` (L_KL's lambda) linearly from 0 to ``weight`` over
    the first ``steps`` steps, so codes find their layout before they are pushed to the corners.

    Example::

        trainer = Trainer(..., callbacks=[KLWarmup(weight=0.001, steps=1600)])
    """

    def __init__(self, weight: float, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"KLWarmup: steps must be >= 1, got {steps}")
        self.weight, self.steps = float(weight), int(steps)

    def on_step_start(self, trainer) -> None:
        loss = inner_loss(trainer.loss_fn)
        if getattr(loss, "embedding_regularizer", None) is not None:
            loss.embedding_reg_weight = self.weight * min(1.0, trainer.step / self.steps)


class CodeSharpening:
    """Raise every :class:`~pml_shrewd.models.HashHead`'s ``sharpness`` linearly from 1 to
    ``final`` over the first ``steps`` steps (HashNet's continuation, Cao et al., ICCV 2017):
    codes learn their layout through a soft sigmoid, then are driven to {0, 1}, so ranking by
    the binary codes loses less against the continuous ones. The last step trains with ``final``.

    ``fix_norm_scale`` (default) stops training the scale of each head's BatchNorm before the
    sigmoid: left free it shrinks as the slope grows and undoes most of it (Flickr8k dev, slope
    12: the scale fell from 2.0 to 0.33, the binarisation drop only from 0.0121 to 0.0110; with
    the scale fixed the drop was 0.0052). The BatchNorm's shift still trains.

    Example::

        trainer = Trainer(..., callbacks=[CodeSharpening(final=12.0, steps=4000)])
    """

    def __init__(self, final: float, steps: int, fix_norm_scale: bool = True) -> None:
        if not final >= 1.0:
            raise ValueError(f"CodeSharpening: final must be >= 1, got {final!r}")
        if steps < 1:
            raise ValueError(f"CodeSharpening: steps must be >= 1, got {steps}")
        self.final, self.steps, self.fix_norm_scale = float(final), int(steps), fix_norm_scale

    def sharpness_at(self, step: int) -> float:
        """The sharpness the step after ``step`` completed steps trains with."""
        return 1.0 + (self.final - 1.0) * min(1.0, (step + 1) / self.steps)

    @staticmethod
    def _heads(model) -> list[HashHead]:
        return [m for m in model.modules() if isinstance(m, HashHead)]

    def on_model(self, model) -> None:
        if not self._heads(model):
            raise ValueError("CodeSharpening: the model holds no HashHead whose sharpness it could raise")
        if self.fix_norm_scale:
            for head in self._heads(model):
                if isinstance(head.norm, nn.BatchNorm1d) and head.norm.weight is not None:
                    head.norm.weight.requires_grad_(False)

    def on_step_start(self, trainer) -> None:
        value = self.sharpness_at(trainer.step)
        for head in self._heads(trainer.accelerator.unwrap_model(trainer.model)):
            head.sharpness.fill_(value)
