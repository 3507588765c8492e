"""L_sim of SHREWD: match code distances to semantic distances."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer, MultipleReducers
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

    Speed: with all pairs (no miner) and PML's default ``MeanReducer``, float32 or float64, the
    mean is computed on the whole distance matrix in a few in-place passes, the semantic terms
    on the table of the batch's distinct ids (:meth:`_all_pairs_mean`): the same value and
    gradient up to rounding (tests/test_losses_fast_path.py), the loss PML's reducer sees is then
    already reduced. Any other reducer gets the per-pair losses and their indices as before.

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
        if indices_tuple is None and self._fast_path_applies(code_mat):
            # All pairs and PML's mean: on the whole matrix, in a few fused passes.
            fast = self._all_pairs_mean(code_mat, labels, ref_labels, square=ref_emb is embeddings)
            if fast is not None:
                return fast
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

    def _fast_path_applies(self, code_mat: torch.Tensor) -> bool:
        """Whether :meth:`_all_pairs_mean` may replace the pair-by-pair computation: float32 or
        float64 distances, PML's ``MeanReducer`` on this loss (every other reducer sees the
        per-pair losses and their indices), no statistics collected."""
        if code_mat.dtype not in (torch.float32, torch.float64) or code_mat.dim() != 2:
            return False
        if not code_mat.is_contiguous():
            return False
        reducer = self.reducer
        if isinstance(reducer, MultipleReducers):
            if reducer.collect_stats:
                return False
            reducer = reducer.reducers["loss"] if "loss" in reducer.reducers else reducer.default_reducer
        return type(reducer) is MeanReducer and not reducer.collect_stats and not self.collect_stats

    def _all_pairs_mean(
        self, code_mat: torch.Tensor, labels: torch.Tensor, ref_labels: torch.Tensor, square: bool
    ) -> dict | None:
        """The mean of :meth:`per_pair_loss` over all pairs (``b != b'`` when ``square``), the
        same value and gradient in far fewer passes over the ``B x R`` matrices.

        * The semantic side is computed on the ``U x U'`` table of the distinct ids (one
          provider call), its normalisers from the number of pairs per table entry, then
          gathered: ``-D_y / max / tau_y`` and the weight ``w`` (with ``balance_levels`` too).
        * The code side works on the whole matrix, the diagonal's terms set to zero (its
          gradient too): no pair indices, no copies of the off-diagonal entries.
        * :class:`_AllPairsMeanLoss` does the ``B x R`` passes in place and computes the
          gradient in one more pass (the ``tau_z`` term is a scalar times ``D_z``'s sum).

        Returns ``None`` (use the pair-by-pair path) where the normalisers are not finite or not
        representable in the codes' dtype, so errors and extreme scales behave exactly as there.
        """
        n_rows, n_cols = code_mat.shape
        num_pairs = n_rows * (n_cols - 1) if square else n_rows * n_cols
        if num_pairs == 0 or (square and n_rows != n_cols):
            return None
        work = code_mat.dtype
        ref_labels = labels if square else ref_labels.to(labels.device)
        ids, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        if square:
            ref_ids, ref_inverse, ref_counts = ids, inverse, counts
        else:
            ref_ids, ref_inverse, ref_counts = torch.unique(
                ref_labels, return_inverse=True, return_counts=True
            )
        table = self.semantic_distance(ids, ref_ids)  # the provider's checks, on the distinct ids
        table = table.to(device=code_mat.device, dtype=work)
        counts, ref_counts = counts.to(code_mat.device), ref_counts.to(code_mat.device)
        inverse, ref_inverse = inverse.to(code_mat.device), ref_inverse.to(code_mat.device)
        pairs_per_entry = counts[:, None] * ref_counts[None, :]  # pairs (b, b') with these ids
        if square:
            pairs_per_entry.diagonal().sub_(counts)  # less the self-pairs
        present = pairs_per_entry > 0
        sem_scale = table.masked_fill(~present, -math.inf).max()  # largest D_y among the pairs used
        sem_n = table / torch.where(sem_scale > 0, sem_scale, torch.full_like(sem_scale, math.inf))
        tau_y = ((sem_n.double() * pairs_per_entry).sum() / num_pairs).to(work)
        neg_target = sem_n.div_(tau_y.clamp(min=self.eps)).neg_()  # -(D_y / max) / tau_y per entry
        weight = (self.gamma / (self.gamma + table)) ** self.rho
        if self.balance_levels:
            levels, level = torch.unique(table[present], return_inverse=True)
            count = torch.zeros(len(levels), dtype=torch.long, device=table.device)
            count.scatter_add_(0, level, pairs_per_entry[present])
            weight[present] = weight[present] * (num_pairs / (len(levels) * count[level]).to(weight.dtype))

        with torch.no_grad():
            dist = code_mat.detach()
            largest = dist.max()
            if square:
                off = off_diagonal_view(dist)
                stats = torch.stack([largest, dist.diagonal().max(), off.sum()]).tolist()
                largest_value, diagonal_max, total = stats
                if diagonal_max == largest_value and diagonal_max > 0:  # the diagonal holds the max
                    largest_value = float(off.max())
            else:
                largest_value, total = torch.stack([largest, dist.sum()]).tolist()
        if not (math.isfinite(largest_value) and math.isfinite(total)):
            return None  # non-finite or overflowing distances: the pair-by-pair path names them
        # scale_normalised's rule: divide by the largest distance, by infinity if that is 0
        scale = largest_value if largest_value > 0 else math.inf
        tau_z = total / scale / num_pairs
        divisor = scale * max(tau_z, self.eps)  # D_z / max / tau_z = D_z / divisor
        tau_z_grad = (not self.detach_tau_z) and tau_z >= self.eps and code_mat.requires_grad
        finfo = torch.finfo(work)
        if math.isfinite(divisor) and not (
            finfo.tiny < divisor and 1 / (divisor * num_pairs) < finfo.max / 2
        ):
            return None  # the divisor (or the gradient's scale) is not a normal number of the dtype
        # the gathers: B x R entries from the U x U' tables (columns of the small table first,
        # then whole rows: index_select along dim 1 of a B-row matrix is slow on CPU)
        neg_target = neg_target.index_select(1, ref_inverse).index_select(0, inverse)
        weight = weight.index_select(1, ref_inverse).index_select(0, inverse)
        loss = _AllPairsMeanLoss.apply(
            code_mat, neg_target, weight, divisor, num_pairs, self.error == "squared", square, tau_z_grad
        )
        if not torch.isfinite(loss):
            return None
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}

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


class _AllPairsMeanLoss(torch.autograd.Function):
    """``mean over pairs of w * err(D / divisor - target)`` on whole ``B x R`` matrices.

    ``neg_target`` (``-target``) and ``weight`` are this call's own buffers and are overwritten:
    ``q = D / divisor + neg_target`` in the first, ``x = w * q`` (squared) or ``w * sign(q)``
    (absolute) in the second, which is all the backward pass needs. With ``square`` the
    diagonal's terms (self-pairs) are zero, and so is their gradient.

    With ``f = 1 / divisor``, the gradient in ``D_ij`` is ``f/N * r_ij`` with
    ``r = d(w * err)/dq`` (``2 x`` or ``x``), less ``(f/N)**2 * sum(r * D)`` for every pair when
    ``tau_z`` carries gradient (``divisor`` is ``max * tau_z`` and ``tau_z`` is the mean of
    ``D / max``; the max is detached). ``divisor = inf`` (all distances 0) gives ``q = -target``
    and no gradient, as :func:`scale_normalised` does.
    """

    @staticmethod
    def forward(ctx, code_mat, neg_target, weight, divisor, num_pairs, squared, square, tau_z_grad):
        dist = code_mat.contiguous()
        # D / divisor (a division, as D / max / tau_z: exact fits stay exact)
        q = neg_target.addcdiv_(dist, torch.full((), divisor, dtype=dist.dtype, device=dist.device))
        if square:
            q.diagonal().zero_()
        x = weight.mul_(q if squared else q.sign())
        # The sums by torch's cascade summation (a long BLAS dot drifts by 1e-6 relative in
        # float32, and sum(x * D) sets the tau_z term, which the per-pair terms nearly cancel),
        # their products written into q's buffer, which is no longer needed.
        total = q.mul_(x).sum()  # sum(w * err)
        factor = 1.0 / divisor
        if tau_z_grad:
            # (f/N) * sum(x * D): of the order of the loss, no overflow of (f/N)**2 at extreme scales
            ctx.tau_z_term = torch.mul(x, dist, out=q).sum().to(torch.float64) * (factor / num_pairs)
        else:
            ctx.tau_z_term = None
        ctx.scale = (2.0 if squared else 1.0) * factor / num_pairs
        ctx.square = square
        ctx.save_for_backward(x)
        return (total.to(torch.float64) / num_pairs).to(code_mat.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        g = grad.to(torch.float64)
        scale = (g * ctx.scale).to(x.dtype)
        if ctx.tau_z_term is None:
            shift = torch.zeros((), dtype=x.dtype, device=x.device)
        else:
            shift = (-(g * ctx.scale) * ctx.tau_z_term).to(x.dtype)
        grad_dist = torch.addcmul(shift, x, scale)
        if ctx.square:
            grad_dist.diagonal().zero_()
        return grad_dist, None, None, None, None, None, None, None


def off_diagonal_view(mat: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a contiguous square ``n x n`` matrix, row by row, as an
    ``(n - 1) x n`` strided view (the order of :func:`off_diagonal`)."""
    n = len(mat)
    return mat.view(-1)[1:].view(n - 1, n + 1)[:, :-1]


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
