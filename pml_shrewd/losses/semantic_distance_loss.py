"""L_sim of SHREWD: match code distances to semantic distances."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from ..distances import ManhattanDistance
from ..semantic_distances.base import SemanticDistance
from ..utils import NonFiniteLossError, check_embeddings, distance_matrix


class SemanticDistanceLoss(BaseMetricLossFunction):
    """Semantic distance matching, L_sim of SHREWD (Arponen & Bishop, arXiv 2005.04917, eq. 2).

    For every pair ``(b, b')`` used (see *Pairs* below)::

        D_z = distance(z_b, z_b')                  # Manhattan by default: Hamming once binary
        D_y = semantic_distance(y_b, y_b')         # from a provider, in [0, 1]
        w   = gamma**rho / (gamma + D_y)**rho      # close pairs (cat-dog) weigh more
        loss_pair = w * (D_z / tau_z - D_y / tau_y)**2

    ``tau_z`` and ``tau_y`` are the means of ``D_z`` and ``D_y`` over the pairs used,
    so only the *relative* layout of the codes is matched and the loss is invariant
    to scaling the codes. The default reducer averages over pairs.

    Pairs:
        - No miner, no ``ref_emb``: every ordered pair ``b != b'`` of the batch, and the
          default reducer averages over them. That is the paper's ``1/B**2`` sum over all
          ``(b, b')`` times ``B / (B - 1)``: the ``B`` self-pairs (zero in both terms) are
          left out of the mean, as PML leaves self-pairs out.
        - ``ref_emb`` / ``ref_labels`` (and :class:`~pml_shrewd.losses.CrossBatchMemory`):
          every pair ``(query, reference)``; no self-pair is removed, since the two sets
          are different tensors (the memory removes the current batch's own slots itself).
        - ``indices_tuple`` from a miner: the loss has no positives or negatives, so the
          pairs of a pair miner ``(a1, p, a2, n)`` are the union of ``(a1, p)`` and
          ``(a2, n)``, and a triplet ``(a, p, n)`` contributes its two pairs ``(a, p)``
          and ``(a, n)``. The result is a *set* of distinct ordered pairs: a pair that
          several triplets share (an anchor-positive pair is in every triplet of that
          anchor and positive) is used once, so mining does not reweight pairs.
          ``tau_z`` and ``tau_y`` are then the means over these pairs.
        - Positive-only pair sets (a one-class batch, or a miner that returns only
          positive pairs) have ``D_y = 0`` everywhere: the target is then zero and the
          loss is ``mean (D_z / tau_z)**2 = 1 + var(D_z) / mean(D_z)**2`` at any scale of
          the codes. It only evens the code distances out; it cannot pull the codes
          together (a scale-free loss has no notion of "close"). Pulling a class together
          needs pairs of other classes in the same set.

    Numerics: the normalisation and the per-pair terms are computed in float32 at least
    (float64 stays float64) and the per-pair losses are returned in the codes' dtype, so
    float16 and bfloat16 codes get finite values and gradients (a one-class batch, too).
    Before the means are taken, both distance vectors are divided by their (detached)
    largest entry, which changes nothing mathematically but keeps the loss exactly scale
    invariant from tiny to huge codes (no underflow of ``tau_z``, no overflow of the sum).
    Where torch has no bfloat16 ``cdist`` (as on CPU), the distance matrix is computed in
    float32 (:func:`~pml_shrewd.utils.distance_matrix`). NaN or infinite codes, and code
    distances or per-pair losses that are not finite (an overflow in the codes' dtype),
    raise :class:`NonFiniteLossError`.

    Args:
        semantic_distance: a provider (``SemanticDistance``) mapping two id tensors to
            distances in ``[0, 1]``; ``labels`` passed to the loss are its ids (a tensor,
            or a list / numpy array of integers, converted to an int64 tensor).
        gamma, rho: the weighting ``w`` above (paper defaults 0.1 and 2); ``gamma > 0``,
            ``rho >= 0`` (``rho = 0``: every pair weighs the same).
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
        eps: *relative* floor of the normalisers, in ``(0, 1)``: ``tau`` is at least
            ``eps`` times the largest distance among the pairs used, so it scales with the
            distances (a mean is never below ``1 / num_pairs`` of the largest entry, so the
            floor only acts for degenerate sets). When every distance is zero (identical
            codes, or a one-class batch for ``D_y``) that term is zero, with zero gradient.
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
        gamma = check_number("gamma", gamma, low=0.0, low_inclusive=False)
        rho = check_number("rho", rho, low=0.0)
        eps = check_number("eps", eps, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        if error not in ("squared", "absolute"):
            raise ValueError(f"error must be 'squared' or 'absolute', got {error!r}")
        for name, flag in (("balance_levels", balance_levels), ("detach_tau_z", detach_tau_z)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
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

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        """PML's ``forward``; ``labels`` / ``ref_labels`` may also be lists or numpy arrays of ids."""
        labels = as_id_tensor(labels, "labels")
        ref_labels = as_id_tensor(ref_labels, "ref_labels")
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)

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
        # Kept in float32 at least: per_pair_loss computes in that precision anyway.
        sem_mat = sem_mat.to(device=code_mat.device, dtype=torch.promote_types(code_mat.dtype, torch.float32))
        if indices_tuple is None:
            # All pairs but self-pairs (PML's convention: self-pairs only when ref_emb is embeddings).
            if ref_emb is embeddings:
                code_dist, sem_dist = off_diagonal(code_mat), off_diagonal(sem_mat)
                rows, cols = off_diagonal_indices(len(code_mat), code_mat.device)
            else:
                code_dist, sem_dist = code_mat.flatten(), sem_mat.flatten()
                rows, cols = all_pair_indices(*code_mat.shape, device=code_mat.device)
        else:
            rows, cols = mined_pair_indices(
                indices_tuple, labels, ref_labels, code_mat.shape[1], code_mat.device
            )
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
        their own scale, and the loss is invariant to scaling the codes. Computed in
        float32 at least, returned in ``code_dist``'s dtype.
        """
        out_dtype = code_dist.dtype
        work = torch.promote_types(out_dtype, torch.float32)
        code_n, sem_n = scale_normalised(code_dist.to(work)), scale_normalised(sem_dist.to(work))
        tau_z = code_n.mean()
        if self.detach_tau_z:
            tau_z = tau_z.detach()
        tau_y = sem_n.mean()
        if self.collect_stats:  # .item() syncs a GPU: only when PML's stats are on
            self.tau_z, self.tau_y = float(code_dist.double().mean()), float(sem_dist.double().mean())
            self.num_pairs = len(code_dist)
        # Normalised distances lie in [0, 1] with a largest entry of 1 (or are all 0), so
        # ``eps`` is a floor relative to the distances' own scale.
        diff = code_n / tau_z.clamp(min=self.eps) - sem_n / tau_y.clamp(min=self.eps)
        err = diff.square() if self.error == "squared" else diff.abs()
        weight = (self.gamma / (self.gamma + sem_dist.to(work))) ** self.rho
        if self.balance_levels:
            _, level, count = torch.unique(sem_dist, return_inverse=True, return_counts=True)
            weight = weight * (len(sem_dist) / (len(count) * count[level]).to(weight.dtype))
        per_pair = (weight * err).to(out_dtype)
        if not torch.isfinite(per_pair).all():  # one sync, as check_embeddings already does
            raise NonFiniteLossError(self._non_finite_message(code_dist, per_pair, work))
        return per_pair

    def _non_finite_message(self, code_dist: torch.Tensor, per_pair: torch.Tensor, work: torch.dtype) -> str:
        name = type(self).__name__
        if not torch.isfinite(code_dist).all():
            return (
                f"{name}: code distances are not finite (the distances of these codes overflow "
                f"{code_dist.dtype}, largest finite value {torch.finfo(code_dist.dtype).max:.3g}); "
                "rescale the codes or use a wider dtype"
            )
        return (
            f"{name}: per-pair losses are not finite in {per_pair.dtype} (they are computed in {work}); "
            "the codes' layout is too extreme for this dtype: use a wider dtype"
        )

    def get_default_distance(self):
        return ManhattanDistance()  # LpDistance(p=1, normalize_embeddings=False), faster

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


def check_number(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """``float(value)``, or a ``ValueError`` / ``TypeError`` naming ``name`` unless it is a finite
    real number within the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or (value < low if low_inclusive else value <= low)
    if high is not None:
        bad = bad or (value > high if high_inclusive else value >= high)
    if bad:
        lo = "" if low is None else f"{'>=' if low_inclusive else '>'} {low:g}"
        hi = "" if high is None else f"{'<=' if high_inclusive else '<'} {high:g}"
        rule = " and ".join(r for r in (lo, hi) if r) or "finite"
        raise ValueError(f"{name} must be a finite number {rule}, got {value}")
    return value


def check_count(name: str, value, low: int = 1) -> int:
    """``int(value)``, or a named error unless it is an integer ``>= low`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def as_id_tensor(ids, name: str = "labels") -> torch.Tensor | None:
    """Integer ids as a tensor: tensors pass unchanged (their checks come later), lists, tuples
    and numpy arrays of integers become int64 tensors; anything else is a named error."""
    if ids is None or isinstance(ids, torch.Tensor):
        return ids
    if isinstance(ids, (list, tuple, np.ndarray)):
        arr = np.asarray(ids)
        if arr.size == 0:
            return torch.zeros(arr.shape, dtype=torch.long)
        if arr.dtype.kind in "iu":
            return torch.from_numpy(arr.astype(np.int64, copy=False))
        raise TypeError(
            f"{name} must be integer ids (a tensor, list or numpy array of integers), got "
            f"{type(ids).__name__} of {arr.dtype}"
        )
    raise TypeError(f"{name} must be a tensor, list or numpy array of integer ids, got {type(ids).__name__}")


def mined_pair_indices(
    indices_tuple, labels: torch.Tensor, ref_labels: torch.Tensor, num_ref: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct ordered ``(query, reference)`` pairs of a miner's pairs or triplets.

    Pairs ``(a1, p, a2, n)`` give ``(a1, p)`` and ``(a2, n)``; triplets ``(a, p, n)`` give
    ``(a, p)`` and ``(a, n)``. Each distinct pair is kept once, in row-major order.
    """
    a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
    rows = torch.cat([a1, a2]).to(device=device, dtype=torch.long)
    cols = torch.cat([p, n]).to(device=device, dtype=torch.long)
    keys = torch.unique(rows * num_ref + cols)
    return keys // num_ref, keys % num_ref


def scale_normalised(dist: torch.Tensor) -> torch.Tensor:
    """``dist`` divided by its detached largest entry; all zeros (with zero gradient) if that is 0.

    The ratios ``dist / mean(dist)`` of the loss do not change, but their intermediate values
    stay within ``[0, 1]``: no underflow for tiny distances, no overflow of the mean for huge
    ones. An all-zero vector (identical codes, a one-class batch) has no scale: it is divided
    by infinity, so its normalised values are 0 and no gradient flows through them.
    """
    scale = dist.detach().max()
    return dist / torch.where(scale > 0, scale, torch.full_like(scale, math.inf))
