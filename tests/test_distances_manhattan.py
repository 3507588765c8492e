"""ManhattanDistance / manhattan_cdist: the values and gradients of torch.cdist(p=1), faster."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.distances import LpDistance

from pml_shrewd.distances import ManhattanDistance, manhattan_cdist
from pml_shrewd.distances import manhattan as manhattan_module
from pml_shrewd.losses import SemanticDistanceLoss
from pml_shrewd.semantic_distances.base import SemanticDistance


def loop_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Slow reference: D_ij = sum_k |x_ik - y_jk| by explicit loops."""
    out = torch.zeros(len(x), len(y), dtype=torch.float64)
    for i in range(len(x)):
        for j in range(len(y)):
            out[i, j] = sum(abs(float(a) - float(b)) for a, b in zip(x[i], y[j]))
    return out


def loop_l1_grads(x, y, w, same):
    """Slow reference of d/dx, d/dy of sum_ij w_ij D_ij with the subgradient sign(0) = 0."""
    gx = torch.zeros(x.shape, dtype=torch.float64)
    gy = torch.zeros(y.shape, dtype=torch.float64)
    for i in range(len(x)):
        for j in range(len(y)):
            for k in range(x.shape[1]):
                s = float(torch.sign(x[i, k].double() - y[j, k].double()))
                gx[i, k] += float(w[i, j]) * s
                gy[j, k] -= float(w[i, j]) * s
    return (gx + gy, None) if same else (gx, gy)


def codes(n, k, dtype, kind, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "binary":  # many exact ties
        return torch.randint(0, 2, (n, k), generator=g).to(dtype)
    if kind == "duplicates":
        x = torch.rand(n, k, generator=g, dtype=dtype)
        x[n // 2 :] = x[: n - n // 2].clone()
        return x
    return torch.rand(n, k, generator=g, dtype=dtype) * 4 - 2


TOL = {torch.float32: dict(rtol=1e-5, atol=1e-4), torch.float64: dict(rtol=1e-12, atol=1e-10)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["uniform", "binary", "duplicates"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (9, 9, 16), (6, 4, 65)])
@pytest.mark.parametrize("same", [True, False])
def test_matches_loop_reference(dtype, kind, shape, same):
    n, m, k = shape
    x = codes(n, k, dtype, kind, 0).requires_grad_()
    y = x if same else codes(m, k, dtype, kind, 1).requires_grad_()
    d = manhattan_cdist(x, y)
    assert d.dtype == dtype and d.shape == (n, n if same else m)
    torch.testing.assert_close(d.double(), loop_l1(x.detach(), y.detach()), **TOL[dtype])
    w = torch.randn(d.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    (d * w).sum().backward()
    gx, gy = loop_l1_grads(x.detach(), y.detach(), w, same)
    torch.testing.assert_close(x.grad.double(), gx, **TOL[dtype])
    if not same:
        torch.testing.assert_close(y.grad.double(), gy, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["uniform", "binary", "duplicates"])
@pytest.mark.parametrize("shape", [(64, 64, 64), (300, 130, 48), (33, 257, 7)])
@pytest.mark.parametrize("same", [True, False])
def test_matches_torch_cdist_and_its_gradient(dtype, kind, shape, same):
    n, m, k = shape
    base_x = codes(n, k, dtype, kind, 3)
    base_y = codes(m, k, dtype, kind, 4)
    w = torch.randn(n, n if same else m, generator=torch.Generator().manual_seed(5), dtype=dtype)

    def run(fn):
        x = base_x.clone().requires_grad_()
        y = x if same else base_y.clone().requires_grad_()
        d = fn(x, y)
        (d * w).sum().backward()
        return d.detach(), x.grad, None if same else y.grad

    ours = run(manhattan_cdist)
    ref = run(lambda a, b: torch.cdist(a, b, p=1))
    for a, b in zip(ours, ref):
        if b is not None:
            torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("same", [True, False])
def test_gradcheck_float64(same):
    g = torch.Generator().manual_seed(6)
    x = torch.rand(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    if same:
        assert torch.autograd.gradcheck(lambda a: manhattan_cdist(a, a), (x,))
        assert torch.autograd.gradcheck(lambda a: manhattan_cdist(a), (x,))
    else:
        assert torch.autograd.gradcheck(manhattan_cdist, (x, y))


def test_gradient_to_one_input_only():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(5, 3, generator=g, dtype=torch.float64)
    manhattan_cdist(x, y).sum().backward()
    ref_x = x.detach().clone().requires_grad_()
    torch.cdist(ref_x, y, p=1).sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad)
    y2 = y.clone().requires_grad_()
    manhattan_cdist(x.detach(), y2).sum().backward()
    ref_y = y.clone().requires_grad_()
    torch.cdist(x.detach(), ref_y, p=1).sum().backward()
    torch.testing.assert_close(y2.grad, ref_y.grad)


def test_ties_get_the_zero_subgradient():
    # |a - b| at a == b: sign(0) = 0, as torch.cdist's backward; the self-pair of D(x, x) gives nothing.
    x = torch.tensor([[0.5, 1.0], [0.5, 0.0]], requires_grad=True)
    y = torch.tensor([[0.5, 1.0]], requires_grad=True)
    manhattan_cdist(x, y).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0.0], [0.0, -1.0]]))
    torch.testing.assert_close(y.grad, torch.tensor([[0.0, 1.0]]))
    z = torch.tensor([[0.25, 0.25]], requires_grad=True)
    manhattan_cdist(z, z).sum().backward()
    torch.testing.assert_close(z.grad, torch.zeros(1, 2))


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(12, 20, generator=g).T  # 20 x 12, not contiguous
    y = torch.rand(12, 9, generator=g).T[::2]
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    xo, yo = x.clone().requires_grad_(), y.clone().requires_grad_()
    d = manhattan_cdist(xo.T.contiguous().T, yo)
    torch.testing.assert_close(d, torch.cdist(xr, yr, p=1))
    d.sum().backward()
    torch.cdist(xr, yr, p=1).sum().backward()
    torch.testing.assert_close(xo.grad, xr.grad)
    torch.testing.assert_close(yo.grad, yr.grad)


@pytest.mark.parametrize("same", [True, False])
def test_pure_torch_paths(monkeypatch, same):
    """Without faiss (forward by cdist) and with the chunked backward: the same values."""
    g = torch.Generator().manual_seed(9)
    base = torch.rand(40, 11, generator=g)
    other = torch.rand(23, 11, generator=g)
    w = torch.randn(40, 40 if same else 23, generator=g)

    def grads():
        x = base.clone().requires_grad_()
        y = x if same else other.clone().requires_grad_()
        d = manhattan_cdist(x, y)
        (d * w).sum().backward()
        return d.detach(), x.grad, None if same else y.grad

    fast = grads()
    monkeypatch.setattr(manhattan_module, "faiss", None)
    monkeypatch.setattr(manhattan_module, "_CHUNK_ELEMENTS", 11 * 23 * 3)  # several chunks

    def chunked_only(grad, x, y, dist):
        return manhattan_module._sign_weighted_sum_chunked(grad, x, y)

    monkeypatch.setattr(manhattan_module, "_sign_weighted_sum", chunked_only)
    slow = grads()
    for a, b in zip(fast, slow):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_memory_is_quadratic_not_cubic():
    """Peak live bytes of forward + backward stay a few B x B matrices, far below B x B x K."""
    b, k = 384, 64
    x = torch.rand(b, k)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        z = x.clone().requires_grad_()
        manhattan_cdist(z, z).sum().backward()
    events = sorted((e for e in prof.events() if e.cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage
        peak = max(peak, live)
    assert peak < 8 * b * b * 4  # B x B x K float32 would be 64 x B^2 x 4 bytes


def test_pml_distance_interface():
    dist = ManhattanDistance()
    assert isinstance(dist, LpDistance)
    assert dist.p == 1 and dist.power == 1
    assert dist.is_inverted is False and dist.normalize_embeddings is False
    g = torch.Generator().manual_seed(10)
    q, r = torch.rand(6, 8, generator=g), torch.rand(4, 8, generator=g)
    torch.testing.assert_close(dist(q, r), torch.cdist(q, r, p=1))
    torch.testing.assert_close(dist(q), torch.cdist(q, q, p=1))
    torch.testing.assert_close(dist.pairwise_distance(q[:4], r), loop_l1(q[:4], r).diagonal().float())
    # PML's own options behave as in LpDistance(p=1).
    for kwargs in (dict(power=2, normalize_embeddings=False), dict(normalize_embeddings=True)):
        torch.testing.assert_close(ManhattanDistance(**kwargs)(q, r), LpDistance(p=1, **kwargs)(q, r))
    with pytest.raises(ValueError, match="p=1"):
        ManhattanDistance(p=2)
    with pytest.raises(ValueError, match="is_inverted"):
        ManhattanDistance(is_inverted=True)
    # float16 follows PML's pair-by-pair path (exact pairwise_distance here).
    h = dist(q.half(), r.half())
    assert h.dtype == torch.float16
    torch.testing.assert_close(h.float(), torch.cdist(q, r, p=1), rtol=1e-2, atol=2e-2)


class _Table(SemanticDistance):
    def __init__(self, n):
        t = torch.rand(n, n, generator=torch.Generator().manual_seed(11))
        self.table = ((t + t.T) / 2).fill_diagonal_(0)
        self.num_ids = n

    def pairwise(self, a, b):
        return self.table[a][:, b]


def test_semantic_distance_loss_default_is_manhattan():
    loss = SemanticDistanceLoss(_Table(10))
    assert isinstance(loss.distance, ManhattanDistance)
    assert loss.distance.normalize_embeddings is False


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_ref", [False, True])
def test_semantic_distance_loss_same_as_with_lp_distance(dtype, with_ref):
    from pml_shrewd import EmpiricalKLRegularizer

    table = _Table(10)
    g = torch.Generator().manual_seed(12)
    z0 = torch.rand(48, 16, generator=g, dtype=dtype)
    z0[5] = z0[6]  # an exact duplicate: ties everywhere on that pair
    r0 = torch.rand(20, 16, generator=g, dtype=dtype)
    labels = torch.randint(0, 10, (48,), generator=g)
    ref_labels = torch.randint(0, 10, (20,), generator=g)

    def run(distance):
        torch.manual_seed(0)  # the KL term's target sample
        loss_fn = SemanticDistanceLoss(
            table, distance=distance, embedding_regularizer=EmpiricalKLRegularizer(), balance_levels=True
        )
        z = z0.clone().requires_grad_()
        r = r0.clone().requires_grad_()
        if with_ref:
            value = loss_fn(z, labels, ref_emb=r, ref_labels=ref_labels)
        else:
            value = loss_fn(z, labels)
        value.backward()
        return value.detach(), z.grad, r.grad

    ours = run(None)  # the default
    ref = run(LpDistance(p=1, normalize_embeddings=False))
    torch.testing.assert_close(ours[0], ref[0], **TOL[dtype])
    torch.testing.assert_close(ours[1], ref[1], **TOL[dtype])
    if with_ref:
        torch.testing.assert_close(ours[2], ref[2], **TOL[dtype])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("same", [True, False])
def test_cuda_matches_cdist(same):
    g = torch.Generator().manual_seed(13)
    base, other = torch.rand(70, 32, generator=g), torch.rand(50, 32, generator=g)
    out = []
    for fn in (manhattan_cdist, lambda a, b: torch.cdist(a, b, p=1)):
        x = base.cuda().requires_grad_()
        y = x if same else other.cuda().requires_grad_()
        d = fn(x, y)
        d.square().sum().backward()
        out.append((d.detach(), x.grad, None if same else y.grad))
    for a, b in zip(*out):
        if a is not None:
            torch.testing.assert_close(a, b)
