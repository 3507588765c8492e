"""The all-pairs path of SemanticDistanceLoss (whole-matrix passes, issue 19 item 11) and the
blocked nearest-neighbour search of EmpiricalKLRegularizer, against slow references written here:
the loss pair by pair with float64 autograd, the search with torch.cdist and explicit loops."""

import math

import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import MeanReducer
from test_losses import TableDistance, random_table  # the same small provider and table

from pml_shrewd import EmpiricalKLRegularizer, SemanticDistanceLoss, SHREDLoss
from pml_shrewd.distances import ManhattanDistance
from pml_shrewd.regularizers import empirical_kl_regularizer as kl_module


class PairByPairMean(MeanReducer):
    """PML's mean under another name: the loss then takes its pair-by-pair path."""


def slow_sim_loss(
    z,
    y,
    table,
    ref_z=None,
    ref_y=None,
    gamma=0.1,
    rho=2.0,
    error="squared",
    balance=False,
    detach_tau_z=False,
    eps=1e-8,
):
    """L_sim from an explicit list of pairs, in float64 torch scalars (autograd gives the gradient).

    tau_z = mean(D_z) (at least eps * max D_z), tau_y likewise; pairs b != b' without ref_z."""
    same = ref_z is None
    rz, ry = (z, y) if same else (ref_z, ref_y)
    pairs = [(i, j) for i in range(len(z)) for j in range(len(rz)) if not (same and i == j)]
    terms_z = [(z[i] - rz[j]).abs().sum() for i, j in pairs]
    terms_y = [table[int(y[i]), int(ry[j])].double() for i, j in pairs]
    dz, dy = torch.stack(terms_z).double(), torch.stack(terms_y)
    tau_z = torch.maximum(dz.mean(), eps * dz.max().detach())
    if detach_tau_z:
        tau_z = tau_z.detach()
    tau_y = torch.maximum(dy.mean(), eps * dy.max())
    ez = dz / tau_z if dz.max() > 0 else torch.zeros_like(dz)
    ey = dy / tau_y if dy.max() > 0 else torch.zeros_like(dy)
    w = (gamma / (gamma + dy)) ** rho
    if balance:
        levels = sorted(set(dy.tolist()))
        count = {v: dy.tolist().count(v) for v in levels}
        w = w * torch.tensor([len(dy) / (len(levels) * count[v]) for v in dy.tolist()], dtype=torch.float64)
    err = (ez - ey) ** 2 if error == "squared" else (ez - ey).abs()
    return (w * err).mean()


def codes(n, k, dtype, seed, kind="uniform"):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, k, generator=g, dtype=torch.float64)
    if kind == "binary":
        z = (z > 0.5).double()
    elif kind == "duplicates":
        z[1::3] = z[0::3][: len(z[1::3])]
    return z.to(dtype)


CASES = [
    {},
    {"error": "absolute"},
    {"detach_tau_z": True},
    {"gamma": 0.4, "rho": 1.0},
    {"rho": 0.0},
    {"balance_levels": True},
    {"eps": 0.9},  # tau_z below the floor: clamped, no gradient through it
    {"error": "absolute", "detach_tau_z": True, "balance_levels": True},
]


def _slow_kwargs(kw):
    names = {"balance_levels": "balance"}
    return {names.get(k, k): v for k, v in kw.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch,ref", [(2, None), (7, None), (33, None), (9, 13), (1, 5)])
@pytest.mark.parametrize("kw", CASES)
def test_all_pairs_path_matches_pair_by_pair_reference(dtype, batch, ref, kw):
    levels = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)  # a hierarchy's three levels
    table = levels[torch.randint(1, 3, (6, 6), generator=torch.Generator().manual_seed(batch))]
    table = (
        torch.maximum(table, table.T).fill_diagonal_(0) if kw.get("balance_levels") else random_table(6, 3)
    )
    z = codes(batch, 16, dtype, seed=batch).requires_grad_()
    y = torch.randint(0, 6, (batch,), generator=torch.Generator().manual_seed(batch + 1))
    args = {}
    rz = ry = None
    if ref is not None:
        rz = codes(ref, 16, dtype, seed=ref + 100).requires_grad_()
        ry = torch.randint(0, 6, (ref,), generator=torch.Generator().manual_seed(ref))
        args = {"ref_emb": rz, "ref_labels": ry}
    loss = SemanticDistanceLoss(TableDistance(table), **kw)(z, y, **args)
    assert loss.grad_fn is not None and "AllPairsMean" in type(loss.grad_fn).__name__  # the fast path
    loss.backward()
    z64 = z.detach().double().requires_grad_()
    rz64 = None if rz is None else rz.detach().double().requires_grad_()
    expected = slow_sim_loss(z64, y, table, rz64, ry, **_slow_kwargs(kw))
    expected.backward()
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    atol = 1e-12 if dtype == torch.float64 else 1e-7  # the loss is of order 1: float32's rounding
    assert loss.dtype == dtype
    assert loss.item() == pytest.approx(expected.item(), rel=rtol, abs=atol)
    for got, want in (
        (z.grad, z64.grad),
        (None if rz is None else rz.grad, None if rz64 is None else rz64.grad),
    ):
        if want is None:
            continue
        assert torch.isfinite(got).all()
        scale = want.abs().max().item()
        assert (got.double() - want).abs().max().item() <= 10 * rtol * scale + atol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["uniform", "binary", "duplicates"])
@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize(
    "distance",
    [None, LpDistance(p=1, normalize_embeddings=False), LpDistance(p=2, normalize_embeddings=False)],
)
def test_all_pairs_path_equals_pair_by_pair_path(dtype, kind, kw, distance):
    # The same loss through PML's per-pair machinery (a MeanReducer under another name), on a
    # batch large enough for cdist's matrix-product route (whose diagonal is not exactly 0).
    table = random_table(8, seed=4)
    if kw.get("balance_levels"):
        table = (table * 3).round() / 3
    z = codes(64, 32, dtype, seed=5, kind=kind)
    y = torch.randint(0, 8, (64,), generator=torch.Generator().manual_seed(6))
    extra = {} if distance is None else {"distance": distance}
    results = []
    for reducer in (None, PairByPairMean()):
        zz = z.clone().requires_grad_()
        loss = SemanticDistanceLoss(TableDistance(table), reducer=reducer, **extra, **kw)(zz, y)
        loss.backward()
        results.append((loss.detach().double(), zz.grad.double()))
    (fast, fast_grad), (slow, slow_grad) = results
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    atol = 1e-12 if dtype == torch.float64 else 1e-7
    assert fast.item() == pytest.approx(slow.item(), rel=rtol, abs=atol)
    assert torch.isfinite(fast_grad).all()
    assert (fast_grad - slow_grad).abs().max() <= 10 * rtol * slow_grad.abs().max().item() + atol / 64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_pairs_path_degenerate_batches_are_finite(dtype):
    provider = TableDistance(random_table(4, seed=7))
    cases = [
        (torch.full((6, 8), 0.5, dtype=dtype), torch.zeros(6, dtype=torch.long)),  # one class, one code
        (codes(6, 8, dtype, 8, "binary"), torch.zeros(6, dtype=torch.long)),  # one class
        (torch.full((5, 8), 0.25, dtype=dtype), torch.arange(5) % 4),  # identical codes
        (codes(2, 8, dtype, 9), torch.tensor([0, 1])),  # a single pair each way
    ]
    for z, y in cases:
        for kw in CASES:
            zz = z.clone().requires_grad_()
            loss = SemanticDistanceLoss(provider, **kw)(zz, y)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(zz.grad).all(), kw


def test_all_pairs_path_with_kl_and_shred_matches_pair_by_pair_path():
    table = random_table(5, seed=10)
    z = codes(40, 16, torch.float64, seed=11)
    y = torch.randint(0, 5, (40,), generator=torch.Generator().manual_seed(12))
    for build in (
        lambda reducer: SemanticDistanceLoss(
            TableDistance(table), reducer=reducer, embedding_regularizer=EmpiricalKLRegularizer()
        ),
        lambda reducer: SHREDLoss(TableDistance(table), embedding_size=16, num_classes=5, reducer=reducer),
    ):
        out = []
        for reducer in (None, PairByPairMean()):
            torch.manual_seed(0)  # the KL target sample and the classifier's initialisation
            loss_fn = build(reducer).double()
            zz = z.clone().requires_grad_()
            loss = loss_fn(zz, y)
            loss.backward()
            out.append((loss.item(), zz.grad))
        assert out[0][0] == pytest.approx(out[1][0], rel=1e-12)
        assert torch.allclose(out[0][1], out[1][1], rtol=1e-10, atol=1e-14)


def test_all_pairs_path_default_distance_is_manhattan():
    # The benchmark's configuration: ManhattanDistance, MatrixDistance-like provider, 100 classes.
    table = random_table(100, seed=13)
    z = codes(300, 64, torch.float32, seed=14).requires_grad_()
    y = torch.randint(0, 100, (300,), generator=torch.Generator().manual_seed(15))
    loss_fn = SemanticDistanceLoss(TableDistance(table))
    assert isinstance(loss_fn.distance, ManhattanDistance)
    loss = loss_fn(z, y)
    loss.backward()
    z64 = z.detach().double().requires_grad_()
    slow = SemanticDistanceLoss(TableDistance(table), reducer=PairByPairMean())(z64, y)
    slow.backward()
    assert loss.item() == pytest.approx(slow.item(), rel=1e-5)
    assert (z.grad.double() - z64.grad).abs().max() <= 1e-4 * z64.grad.abs().max()


# ---------------------------------------------------------------- KL: the blocked search
def cdist_argmins(z, target):
    """The search as it was: one torch.cdist matrix, the codes themselves masked out."""
    mat = torch.cdist(z, torch.cat([target, z]))
    to_batch = mat[:, len(target) :].masked_fill(torch.eye(len(z), dtype=torch.bool), math.inf)
    return mat[:, : len(target)].argmin(1), to_batch.argmin(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,m", [(13, 13), (30, 7), (300, 300), (257, 1000), (1000, 64)])
def test_blocked_search_is_cdist_search(monkeypatch, dtype, n, m):
    monkeypatch.setattr(kl_module, "_SEARCH_BLOCK_ENTRIES", 1)  # blocks of 128 rows: several
    monkeypatch.setattr(kl_module, "_SEARCH_MAX_BLOCKS", 10**6)
    reg = EmpiricalKLRegularizer()
    z = codes(n, 24, dtype, seed=n)
    target = reg.sample_target(m, 24, z)
    assert reg._blocked_search_applies(z, torch.cat([target, z]))
    got = reg.nearest_neighbours(z, target)
    want = cdist_argmins(z, target)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_blocked_search_matches_loops_and_gradients_are_finite(monkeypatch):
    monkeypatch.setattr(kl_module, "_SEARCH_BLOCK_ENTRIES", 1)
    monkeypatch.setattr(kl_module, "_SEARCH_MAX_BLOCKS", 10**6)
    reg = EmpiricalKLRegularizer()
    z = codes(150, 8, torch.float64, seed=16, kind="duplicates")
    torch.manual_seed(17)
    target = reg.sample_target(150, 8, z)
    reg.sample_target = lambda num_samples, dim, like: target.to(like.dtype)
    zz = z.clone().requires_grad_()
    value = reg(zz)
    value.backward()
    assert torch.isfinite(zz.grad).all()
    zl, ul = z.tolist(), target.tolist()
    floor = reg.distance_floor(torch.float64)
    expected = 0.0
    for i, zi in enumerate(zl):
        to_u = min(math.dist(zi, uj) for uj in ul)
        to_z = min(math.dist(zi, zj) for j, zj in enumerate(zl) if j != i)
        expected += math.log(max(to_u, floor)) - math.log(max(to_z, floor))
    assert value.item() == pytest.approx(expected / len(zl), rel=1e-10)


def test_blocked_search_default_blocks_are_cdist_search():
    # Above 2**22 entries: blocks of at least 2**22 entries, multiples of 128 rows (here 1408 + 92).
    reg = EmpiricalKLRegularizer()
    z = codes(1500, 16, torch.float32, seed=18)
    target = reg.sample_target(1500, 16, z)
    got = reg.nearest_neighbours(z, target)
    want = cdist_argmins(z, target)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
