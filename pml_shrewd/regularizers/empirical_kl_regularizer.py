"""L_KL of SHREWD: empirical KL divergence of the codes to a near-binary Beta target."""

from __future__ import annotations

import math

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.regularizers import BaseRegularizer
from pytorch_metric_learning.utils import common_functions as c_f

from ..utils import NonFiniteLossError, check_embeddings, distance_matrix

# Entries per block of the nearest-neighbour search on CPU (16 MB of float32): glibc serves a
# block that size from its heap, reused from one block to the next (a larger matrix is mapped
# afresh on every call, and its page faults cost more than the product itself). At most
# _SEARCH_MAX_BLOCKS blocks: every block is a few parallel regions, and on a loaded machine each
# region waits for a core (many small blocks were 3x slower there with 2 threads).
_SEARCH_BLOCK_ENTRIES = 2**22
_SEARCH_MAX_BLOCKS = 8


class EmpiricalKLRegularizer(BaseRegularizer):
    """Kozachenko-Leonenko estimate of KL(p_z || Beta(alpha, beta)^K), L_KL of SHREWD
    (Arponen & Bishop, arXiv 2005.04917, eq. 3).

    Each call draws a fresh sample ``u`` of ``num_target_samples`` points (the batch
    size by default) from ``Beta(alpha, beta)^K`` and returns, per code ``z_b``::

        log nu(z_b; u) - log nu(z_b; z)

    with ``nu(z_b; u)`` the distance to the nearest target point and ``nu(z_b; z)`` the
    distance to the nearest *other* code of the batch. Averaged (the default reducer)
    it is the estimator without its constant terms. With ``alpha = beta = 0.1`` the
    target puts its mass near 0 and 1, so the term pushes codes to near-binary values
    *and* spreads them over the hash space (the KoLeo idea of Sablayrolles et al.).
    bfloat16 codes work on CPU too (:func:`distance_matrix`).

    The codes must lie in the target's support ``[0, 1]^K`` (e.g. a sigmoid's output):
    anything else (raw logits, tanh outputs) raises a ``ValueError``, since the estimate
    against a ``[0, 1]`` target would be meaningless there (raw logits scored better than
    uniform codes). The nearest-neighbour distances and their logs are computed in at least
    float32 and floored at ``max(eps, torch.finfo(dtype).tiny)`` (6.1e-5 for float16, where
    1e-8 rounds to 0), so duplicate codes give finite values and finite gradients in every
    dtype; a non-finite result raises ``NonFiniteLossError`` (a ``FloatingPointError``)
    instead of returning inf/NaN.
    It works under ``torch.compile`` (no ``fill_diagonal_`` on a slice, whose ``as_strided`` view
    AOTAutograd cannot functionalise; the search fills a ``diagonal()`` view, which it can).

    Args:
        alpha, beta: Beta target parameters (paper: 0.1, 0.1).
        num_target_samples: size ``m`` of the target sample; ``None`` uses the batch size.
        eps: floor of nearest-neighbour distances, so duplicate codes give finite values
            (raised to the smallest normal number of the codes' dtype where that is larger).
        target_pool_size: draw the target coordinates from a pool of this many exact
            Beta draws made once per device (each call still draws a fresh random sample,
            from the pool's empirical distribution); 2**20 draws make it indistinguishable
            from fresh Beta draws for this estimate, at a fraction of the cost of Gamma
            sampling. ``None`` samples Beta afresh on every call.
        full_estimate: add the estimator's constants, ``K * mean(...) + log(m / (n - 1))``,
            to report the KL estimate itself (gradients are ``K`` times larger).
        range_tolerance: codes may lie this far outside ``[0, 1]`` (rounding) before a
            ``ValueError``; ``None`` turns the range check off.
        **kwargs: PML arguments (``distance``: an ``LpDistance``, default Euclidean without
            normalisation;
            ``reducer``).

    Example::

        reg = EmpiricalKLRegularizer()
        loss_fn = SemanticDistanceLoss(provider, embedding_regularizer=reg)
        kl = reg(codes)   # on its own: a scalar
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 0.1,
        num_target_samples: int | None = None,
        eps: float = 1e-8,
        full_estimate: bool = False,
        target_pool_size: int | None = 2**20,
        range_tolerance: float | None = 1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be > 0, got alpha={alpha}, beta={beta}")
        if num_target_samples is not None and num_target_samples < 1:
            raise ValueError(f"num_target_samples must be >= 1 or None, got {num_target_samples}")
        if not isinstance(self.distance, LpDistance):
            raise TypeError(
                f"{type(self).__name__} estimates KL with Lp nearest-neighbour distances: "
                f"distance must be an LpDistance, got {type(self.distance).__name__}"
            )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.num_target_samples = num_target_samples
        self.eps = eps
        self.full_estimate = full_estimate
        if target_pool_size is not None and target_pool_size < 1:
            raise ValueError(f"target_pool_size must be >= 1 or None, got {target_pool_size}")
        self.target_pool_size = target_pool_size
        if range_tolerance is not None and not range_tolerance >= 0:
            raise ValueError(f"range_tolerance must be >= 0 or None, got {range_tolerance}")
        self.range_tolerance = range_tolerance
        self._target_pools: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self.add_to_recordable_attributes(list_of_names=["alpha", "beta"], is_stat=False)

    def compute_loss(self, embeddings):
        check_embeddings(embeddings, "embeddings")
        n, dim = embeddings.shape
        if n < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least two embeddings (a nearest other code), got {n}"
            )
        self.check_range(embeddings)
        target = self.sample_target(self.num_target_samples or n, dim, embeddings)
        nearest_target, nearest_other = self.nearest_neighbours(embeddings, target)
        # Distances and logs in at least float32 (float16 sums of squares lose the small
        # distances); the floor is representable in the codes' dtype, so is the gradient
        # of the log (at most 1 / floor) once cast back.
        work = embeddings if embeddings.dtype in (torch.float32, torch.float64) else embeddings.float()
        nu_target = self.exact_distance(work, target[nearest_target].to(work.dtype))
        nu_batch = self.exact_distance(work, work[nearest_other])
        floor = self.distance_floor(embeddings.dtype)
        losses = torch.log(nu_target.clamp(min=floor)) - torch.log(nu_batch.clamp(min=floor))
        if self.full_estimate:
            m = len(target)
            losses = dim * losses + math.log(m / (n - 1))
        if not torch.isfinite(losses).all():
            raise NonFiniteLossError(
                f"{type(self).__name__}: the nearest-neighbour log-distances log nu(z; u) - log nu(z; z) "
                f"are not finite ({int((~torch.isfinite(losses)).sum())} of {n} codes): the distances "
                f"overflowed {work.dtype}; pass codes in [0, 1] (e.g. torch.sigmoid(logits))"
            )
        losses = losses.to(embeddings.dtype)
        return {
            "loss": {
                "losses": losses,
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "element",
            }
        }

    def nearest_neighbours(
        self, embeddings: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Index of each code's nearest target point and of its nearest other code.

        One distance matrix against ``[target; embeddings]``, without autograd: only
        the chosen pairs are then recomputed with gradients (:meth:`exact_distance`),
        the same gradient as through the min of the full matrix at O(B * K) instead of
        O(B^2 * K) backward cost. For the default Euclidean distance the matrix is
        ``torch.cdist``'s own (norms and one matrix product), computed in blocks of rows
        (:meth:`_euclidean_argmins`): the same values, and on CPU never the whole
        ``B x (m + B)`` matrix at once.
        """
        with torch.no_grad():
            ref = torch.cat([target, embeddings])
            if self._blocked_search_applies(embeddings, ref):
                return self._euclidean_argmins(embeddings, ref, len(target))
            mat = distance_matrix(self.distance, embeddings, ref)
            to_target, to_batch = mat[:, : len(target)], mat[:, len(target) :]
            # Out of place: torch.compile cannot functionalise an in-place fill of a slice.
            self_pairs = torch.eye(len(embeddings), dtype=torch.bool, device=mat.device)
            to_batch = to_batch.masked_fill(self_pairs, float("inf"))
            return to_target.argmin(dim=1), to_batch.argmin(dim=1)

    def _blocked_search_applies(self, embeddings: torch.Tensor, ref: torch.Tensor) -> bool:
        """Whether ``self.distance(embeddings, ref)`` is ``torch.cdist(p=2)`` by its matrix-product
        route (PML's ``LpDistance(p=2)`` without normalisation, power or statistics, float32 or
        float64, more than 25 rows on one side: cdist's ``use_mm_for_euclid_dist_if_necessary``)."""
        d = self.distance
        return (
            type(d) is LpDistance
            and d.p == 2
            and d.power == 1
            and not d.normalize_embeddings
            and not d.collect_stats
            and embeddings.dtype in (torch.float32, torch.float64)
            and (len(embeddings) > 25 or len(ref) > 25)
        )

    def _euclidean_argmins(
        self, embeddings: torch.Tensor, ref: torch.Tensor, num_target: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The argmins of :meth:`nearest_neighbours` from ``torch.cdist(embeddings, ref)``'s
        matrix-product form (``[-2x, |x|^2, 1] @ [y, 1, |y|^2]^T``, clamped at 0, square root),
        built the way cdist builds it, in at most 8 blocks of rows of at least 2**22 entries
        (smaller matrices: one block): a block that size is reused by the allocator (a fresh
        ``B x (m + B)`` matrix costs more in page faults than the product itself). Blocks
        start at multiples of 128 rows, so each row meets the same BLAS kernel as in one product
        over all rows: cdist's values bit for bit (tests/test_losses_fast_path.py); a BLAS that
        rounded otherwise could only change the choice between two neighbours that are equally
        near up to rounding. Other devices: one block."""
        x_norm = embeddings.pow(2).sum(-1, True)
        y_norm = ref.pow(2).sum(-1, True)
        x_aug = torch.cat([embeddings.mul(-2), x_norm, torch.ones_like(x_norm)], -1)
        y_aug_t = torch.cat([ref, torch.ones_like(y_norm), y_norm], -1).mT
        n = len(embeddings)
        block = n
        if embeddings.device.type == "cpu" and n * len(ref) > _SEARCH_BLOCK_ENTRIES:
            rows = max(_SEARCH_BLOCK_ENTRIES // len(ref), -(-n // _SEARCH_MAX_BLOCKS))
            block = max(128, -(-rows // 128) * 128)  # a multiple of 128 rows
        to_target, to_batch = [], []
        for start in range(0, n, block):
            mat = x_aug[start : start + block].matmul(y_aug_t).clamp_min_(0).sqrt_()
            to_target.append(mat[:, :num_target].argmin(dim=1))
            batch = mat[:, num_target:]
            batch.diagonal(offset=start).fill_(float("inf"))  # the codes themselves
            to_batch.append(batch.argmin(dim=1))
        if len(to_target) == 1:
            return to_target[0], to_batch[0]
        return torch.cat(to_target), torch.cat(to_batch)

    def check_range(self, embeddings: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless the codes lie in ``[0, 1]`` (up to ``range_tolerance``)."""
        if self.range_tolerance is None:
            return
        lo, hi = (float(v) for v in torch.aminmax(embeddings.detach()))
        if lo < -self.range_tolerance or hi > 1 + self.range_tolerance:
            raise ValueError(
                f"{type(self).__name__} compares the codes with a Beta({self.alpha:g}, {self.beta:g})^K "
                f"target on [0, 1]^K, but the embeddings range over [{lo:.4g}, {hi:.4g}]: pass codes in "
                f"[0, 1], e.g. torch.sigmoid(logits), not raw logits (tanh outputs: (1 + tanh(x)) / 2); "
                f"range_tolerance={self.range_tolerance:g} allows rounding just outside, None turns the check off"
            )

    def distance_floor(self, dtype: torch.dtype) -> float:
        """The floor of nearest-neighbour distances for codes of ``dtype``: ``eps``, raised to
        the dtype's smallest normal number where that is larger (float16: 1e-8 rounds to 0)."""
        return max(self.eps, torch.finfo(dtype).tiny)

    def exact_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Row-wise distances under ``self.distance``, differentiable."""
        diff = self.distance.maybe_normalize(a) - self.distance.maybe_normalize(b)
        norm = torch.linalg.vector_norm(diff, ord=self.distance.p, dim=1)
        return norm if self.distance.power == 1 else norm**self.distance.power

    def sample_target(self, num_samples: int, dim: int, like: torch.Tensor) -> torch.Tensor:
        """A fresh ``Beta(alpha, beta)^dim`` sample shaped ``(num_samples, dim)``, on
        ``like``'s device and dtype (from the pool when ``target_pool_size`` is set)."""
        if self.target_pool_size is None:
            return self.exact_beta_sample((num_samples, dim), like.device).to(like.dtype)
        key = (like.device, like.dtype)
        pool = self._target_pools.get(key)
        if pool is None:
            # A fixed seed, without touching the global RNG: the pool is the same on every
            # process and run, and making it does not shift the user's random stream.
            cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(0)
                pool = self.exact_beta_sample((self.target_pool_size,), like.device)
            pool = self._target_pools[key] = pool.to(like.dtype)
        picks = torch.randint(len(pool), (num_samples, dim), device=like.device)
        return pool.index_select(0, picks.view(-1)).view(num_samples, dim)  # = pool[picks], faster

    def exact_beta_sample(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Exact Beta draws in float64: with alpha = 0.1 the Gamma variates behind a float32
        Beta underflow to 0 often enough to give 0/0."""
        dist = torch.distributions.Beta(
            torch.tensor(self.alpha, dtype=torch.float64, device=device),
            torch.tensor(self.beta, dtype=torch.float64, device=device),
        )
        return dist.sample(shape).nan_to_num_(0.5).clamp_(0.0, 1.0)

    def get_default_distance(self):
        return LpDistance(p=2, normalize_embeddings=False)

    def get_default_reducer(self):
        return MeanReducer()
