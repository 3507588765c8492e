"""The hash layer: backbone features -> K continuous bits in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn


class HashHead(nn.Module):
    """Linear (or small MLP) projection to ``num_bits`` followed by a sigmoid.

    The continuous code ``z = sigmoid(W h + b)`` in ``[0, 1]^K`` is what SHREWD's
    losses see; ``z > 0.5`` is the binary hash code (Arponen & Bishop,
    arXiv 2005.04917, sec. 3). With ``num_classes > 0`` the head also owns
    ``classifier``, the linear layer on the *continuous* code that SHRED's
    cross-entropy term trains (pass it to ``SHREDLoss(classifier=...)``).
    ``drop_rate`` is dropout on the input features during training (timm's name for
    the dropout before a head), a regulariser for heads trained on frozen features.
    ``standardize=True`` holds per-feature mean and std buffers (set from training features
    with :meth:`set_feature_statistics`) and standardises the input with them, so a head
    trained on standardised cached features deploys on raw backbone features.
    The ``sharpness`` buffer ``s`` (1 by default) makes the code ``sigmoid(s * a)``: raised during
    training (``training.CodeSharpening``, HashNet's continuation) it drives codes towards
    {0, 1} without moving the 0.5 threshold, so binary codes are unchanged by it; it is saved
    with the weights, so continuous codes at deployment are those the run ended with.

    Example::

        head = HashHead(512, num_bits=64, num_classes=100)
        z = head(torch.randn(8, 512))          # (8, 64), values in (0, 1)
        logits = head.classifier(z)            # (8, 100)
    """

    def __init__(
        self,
        in_features: int,
        num_bits: int = 64,
        hidden_dim: int | None = None,
        num_classes: int = 0,
        batch_norm: bool = False,
        drop_rate: float = 0.0,
        standardize: bool = False,
    ) -> None:
        super().__init__()
        for name, value, low in (("in_features", in_features, 1), ("num_bits", num_bits, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"HashHead: {name} must be a positive int, got {value!r}")
        if hidden_dim is not None and (not isinstance(hidden_dim, int) or hidden_dim < 1):
            raise ValueError(f"HashHead: hidden_dim must be None or a positive int, got {hidden_dim!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"HashHead: num_classes must be an int >= 0, got {num_classes!r}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"HashHead: drop_rate must be in [0, 1), got {drop_rate!r}")
        self.in_features, self.num_bits, self.num_classes = in_features, num_bits, num_classes
        self.standardize = bool(standardize)
        if self.standardize:
            self.register_buffer("feature_mean", torch.zeros(in_features))
            self.register_buffer("feature_std", torch.ones(in_features))
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        if hidden_dim is None:
            self.proj = nn.Linear(in_features, num_bits)
        else:
            self.proj = nn.Sequential(
                nn.Linear(in_features, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, num_bits)
            )
        # BatchNorm on the pre-activations keeps every bit centred on the 0.5 threshold and
        # out of the sigmoid's flat tails, where pairwise losses get no gradient.
        self.norm = nn.BatchNorm1d(num_bits) if batch_norm else nn.Identity()
        self.classifier = nn.Linear(num_bits, num_classes) if num_classes > 0 else None
        self.register_buffer("sharpness", torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Continuous codes in ``[0, 1]`` of shape ``(N, num_bits)``."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"HashHead expects features of shape (N, {self.in_features}), got {tuple(features.shape)}"
            )
        if self.standardize:
            features = (features - self.feature_mean) / self.feature_std
        return torch.sigmoid(self.sharpness * self.norm(self.proj(self.dropout(features))))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Weights saved before the sharpness buffer existed were trained with sharpness 1.
        state_dict.setdefault(prefix + "sharpness", torch.ones(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_feature_statistics(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Store the per-feature mean and ``std + eps`` of ``features`` (N, in_features) (float32,
        computed as numpy does, so the standardised inputs are reproducible)."""
        if not self.standardize:
            raise ValueError("HashHead.set_feature_statistics needs standardize=True")
        x = features.detach().cpu().numpy().astype("float32", copy=False)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"HashHead: features of shape (N, {self.in_features}) expected, got {x.shape}")
        mean, std = feature_statistics(x, eps)
        self.feature_mean.copy_(torch.from_numpy(mean))
        self.feature_std.copy_(torch.from_numpy(std))


def feature_statistics(features, eps: float = 1e-6):
    """Per-feature mean and ``std + eps`` of a float32 (N, D) numpy array: the standardisation of
    heads on cached features (:meth:`HashHead.set_feature_statistics`) and of the classical
    baselines on the same features."""
    return features.mean(0), features.std(0) + eps
