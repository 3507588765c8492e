"""Trainer callbacks: small objects with ``on_step_start(trainer)`` / ``on_epoch_end(trainer, record)``."""

from __future__ import annotations

from ..losses.variants import inner_loss


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
