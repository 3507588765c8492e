"""L_sim of SHREWD: match code distances to semantic distances."""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from ..semantic_distances.base import SemanticDistance
from ..utils import check_embeddings, distance_matrix


class SemanticDistanceLoss(BaseMetricLossFunction):
    """Semantic distance matching, L_sim of SHREWD (Arponen & Bishop, arXiv 2005.04917, eq. 2).

    For every pair ``(b, b')`` of the batch (or every pair a miner returns)::

        D_z = distance(z_b, z_b')                  # Manhattan by default: Hamming once binary
        D_y = semantic_distance(y_b, y_b')         # from a provider, in [0, 1]
        w   = gamma**rho / (gamma + D_y)**rho      # close pairs (cat-dog) weigh more
        loss_pair = w * (D_z / tau_z - D_y / tau_y)**2

    ``tau_z`` and ``tau_y`` are the means of ``D_z`` and ``D_y`` over the pairs used,
    so only the *relative* layout of the codes is matched and the loss is invariant
    to scaling the codes. The default reducer averages over pairs. Codes may be float32/64,
    float16 or bfloat16 (where torch has no bfloat16 ``cdist``, as on CPU, the distance matrix
    is computed in float32: :func:`~pml_shrewd.utils.distance_matrix`).

    Args:
        semantic_distance: a provider (``SemanticDistance``) mapping two id tensors to
            distances in ``[0, 1]``; ``labels`` passed to the loss are its ids.
        gamma, rho: the weighting ``w`` above (paper defaults 0.1 and 2).
        error: ``"squared"`` (default) or ``"absolute"`` difference.
        balance_levels: if ``True``, every distinct semantic distance in the pairs used
            (same class, siblings, ..., root) gets the same total weight, on top of ``w``.
            With a hierarchy most pairs of a batch meet at the root and same-class pairs
            are about 1% of them, so without it the loss spends little on pulling a class
            together. For discrete distances (hierarchies, labels); with continuous ones
            (captions) nearly every pair is its own level and it changes nothing.
        detach_tau_z: if ``True``, ``tau_z`` is a constant for autograd. The default
            ``False`` keeps the gradient through ``tau_z``, which makes the loss exactly
            scale-free: it never pushes codes to shrink or grow as a whole, leaving the
            scale to the KL term.
        eps: floor of the normalisers, so a batch of identical codes or of one class
            gives finite values.
        **kwargs: PML arguments (``distance``, ``reducer``, ``embedding_regularizer``,
            ``embedding_reg_weight``).

    Example::

        loss_fn = SemanticDistanceLoss(HierarchyDistance.cifar100(),
                                       embedding_regularizer=EmpiricalKLRegularizer())
        loss = loss_fn(codes, class_ids)          # codes: (B, K) in [0, 1]
    """

    def __init__(
        self,
        semantic_distance: SemanticDistance,
        gamma: float = 0.1,
        rho: float = 2.0,
        error: str = "squared",
        balance_levels: bool = False,
        detach_tau_z: bool = False,
        eps: float = 1e-8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not callable(semantic_distance):
            raise TypeError(
                "semantic_distance must be a provider mapping two id tensors to a distance "
                f"matrix (e.g. HierarchyDistance, LabelDistance), got {type(semantic_distance).__name__}"
            )
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        if error not in ("squared", "absolute"):
            raise ValueError(f"error must be 'squared' or 'absolute', got {error!r}")
        if self.distance.is_inverted:
            raise ValueError(
                f"{type(self).__name__} matches distances: pass a distance (e.g. LpDistance), "
                f"not the similarity {type(self.distance).__name__}"
            )
        self.semantic_distance = semantic_distance
        self.gamma = float(gamma)
        self.rho = float(rho)
        self.error = error
        self.balance_levels = balance_levels
        self.detach_tau_z = detach_tau_z
        self.eps = eps
        self.add_to_recordable_attributes(list_of_names=["gamma", "rho"], is_stat=False)
        self.add_to_recordable_attributes(list_of_names=["tau_z", "tau_y", "num_pairs"], is_stat=True)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if labels is None or ref_labels is None:
            raise ValueError(
                f"{type(self).__name__} needs labels: the ids its semantic-distance provider understands"
            )
        check_embeddings(embeddings, "embeddings")
        if ref_emb is not embeddings:
            check_embeddings(ref_emb, "ref_emb")
            if ref_emb.shape[1] != embeddings.shape[1]:
                raise ValueError(
                    f"ref_emb has {ref_emb.shape[1]} dimensions but embeddings have {embeddings.shape[1]}"
                )
        code_mat = distance_matrix(self.distance, embeddings, ref_emb)
        # One B x R provider call, then the pairs: never a provider call per pair.
        sem_mat = self.semantic_distance(labels, ref_labels.to(labels.device))
        sem_mat = sem_mat.to(device=code_mat.device, dtype=code_mat.dtype)
        if indices_tuple is None:
            # All pairs but self-pairs (PML's convention: self-pairs only when ref_emb is embeddings).
            if ref_emb is embeddings:
                code_dist, sem_dist = off_diagonal(code_mat), off_diagonal(sem_mat)
                rows, cols = off_diagonal_indices(len(code_mat), code_mat.device)
            else:
                code_dist, sem_dist = code_mat.flatten(), sem_mat.flatten()
                rows, cols = all_pair_indices(*code_mat.shape, device=code_mat.device)
        else:
            # The loss has no positives or negatives: every pair a miner returns is used alike.
            a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
            rows = torch.cat([a1, a2]).to(code_mat.device)
            cols = torch.cat([p, n]).to(code_mat.device)
            code_dist, sem_dist = code_mat[rows, cols], sem_mat[rows, cols]
        if len(rows) == 0:
            if indices_tuple is None:
                raise ValueError(
                    f"{type(self).__name__} needs at least two embeddings to form a pair, got a batch of "
                    f"{len(embeddings)}"
                )
            return self.zero_losses()
        per_pair = self.per_pair_loss(code_dist, sem_dist)
        return {"loss": {"losses": per_pair, "indices": (rows, cols), "reduction_type": "pos_pair"}}

    def per_pair_loss(self, code_dist: torch.Tensor, sem_dist: torch.Tensor) -> torch.Tensor:
        """Weighted error between normalised code and semantic distances of the pairs used.

        ``tau_z`` and ``tau_y`` are the means over these pairs: a miner's pairs define
        their own scale, and the loss is invariant to scaling the codes.
        """
        tau_z = code_dist.mean()
        if self.detach_tau_z:
            tau_z = tau_z.detach()
        tau_y = sem_dist.mean()
        if self.collect_stats:  # .item() syncs a GPU: only when PML's stats are on
            self.tau_z, self.tau_y, self.num_pairs = float(tau_z), float(tau_y), len(code_dist)
        diff = code_dist / tau_z.clamp(min=self.eps) - sem_dist / tau_y.clamp(min=self.eps)
        err = diff.square() if self.error == "squared" else diff.abs()
        weight = (self.gamma / (self.gamma + sem_dist)) ** self.rho
        if self.balance_levels:
            _, level, count = torch.unique(sem_dist, return_inverse=True, return_counts=True)
            weight = weight * (len(sem_dist) / (len(count) * count[level]).to(weight.dtype))
        return weight * err

    def get_default_distance(self):
        return LpDistance(p=1, normalize_embeddings=False)

    def get_default_reducer(self):
        return MeanReducer()


def off_diagonal(mat: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, row by row, by a strided view (no gather)."""
    n = len(mat)
    return mat.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(-1)


def off_diagonal_indices(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices matching :func:`off_diagonal`."""
    k = torch.arange(n * (n - 1), device=device)
    rows = k // max(n - 1, 1)
    cols = k % max(n - 1, 1)
    return rows, cols + (cols >= rows).long()


def all_pair_indices(n: int, m: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of a flattened ``n x m`` matrix."""
    k = torch.arange(n * m, device=device)
    return k // m, k % m
