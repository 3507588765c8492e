"""EmpiricalKLRegularizer numerics (issue 19): torch.compile, half precision with duplicate
codes, overflowing codes, codes outside the target's support [0, 1]^K.

Values are checked against slow float64 references with explicit nearest-neighbour loops.
"""

import math
import shutil

import pytest
import torch
from torch import nn

from pml_shrewd import EmpiricalKLRegularizer, NonFiniteLossError, SemanticDistanceLoss
from pml_shrewd.semantic_distances import LabelDistance, MatrixDistance

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
TOL = {torch.bfloat16: 5e-2, torch.float16: 3e-2, torch.float32: 1e-5, torch.float64: 1e-10}


def ref_kl(z, target, floor):
    """Mean of log max(nu(z; u), floor) - log max(nu(z; z), floor), by loops in float64."""
    z = z.double().tolist()
    u = target.double().tolist()
    total = 0.0
    for i, zi in enumerate(z):
        to_u = min(math.dist(zi, uj) for uj in u)
        to_z = min(math.dist(zi, zj) for j, zj in enumerate(z) if j != i)
        total += math.log(max(to_u, floor)) - math.log(max(to_z, floor))
    return total / len(z)


def fixed_target(reg, target):
    """Make ``reg`` use ``target`` (cast to the codes' dtype) instead of a fresh sample."""
    reg.sample_target = lambda num_samples, dim, like: target.to(like.dtype)
    return reg


def codes(n, k, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, k, generator=g, dtype=torch.float64).to(dtype)


# ---------------------------------------------------------------- item 4: torch.compile
def _has_cxx_compiler():
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def _provider(kind):
    if kind == "label":
        return LabelDistance(num_classes=3)
    g = torch.Generator().manual_seed(5)
    t = torch.rand(3, 3, generator=g, dtype=torch.float64)
    t = ((t + t.T) / 2).fill_diagonal_(0)
    return MatrixDistance(t.float().double())


def _step_grads(step, model, x, y):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the KL target sample: the same draw for eager and compiled
    loss = step(x, y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def check_compiled_step(backend, provider, pool):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Sigmoid())
    loss_fn = SemanticDistanceLoss(
        _provider(provider),
        embedding_regularizer=EmpiricalKLRegularizer(target_pool_size=pool),
        embedding_reg_weight=0.5,
    )
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 10, generator=g), torch.randint(0, 3, (24,), generator=g)

    def step(x, y):
        return loss_fn(model(x), y)

    eager_loss, eager_grads = _step_grads(step, model, x, y)
    compiled = torch.compile(step, backend=backend)
    for _ in range(2):  # the second call reuses the compiled graphs
        loss, grads = _step_grads(compiled, model, x, y)
        assert torch.isfinite(loss) and loss.item() == pytest.approx(eager_loss.item(), rel=1e-5, abs=1e-6)
        for a, b in zip(grads, eager_grads):
            assert torch.isfinite(a).all() and torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # The KL term is really there (not a graph that dropped it).
    plain = SemanticDistanceLoss(_provider(provider))(model(x), y)
    assert abs(eager_loss.item() - plain.item()) > 1e-3
    torch._dynamo.reset()


@pytest.mark.parametrize("provider,pool", [("matrix", 2**20), ("label", None)])
def test_kl_training_step_compiles_like_eager_aot(provider, pool):
    # aot_eager runs AOTAutograd's functionalisation, where the in-place fill_diagonal_ on a
    # slice failed ("mutation on a view chain ... as_strided()"); eager kernels, so fast.
    check_compiled_step("aot_eager", provider, pool)


@pytest.mark.slow
@pytest.mark.skipif(not _has_cxx_compiler(), reason="inductor on CPU needs a C++ compiler")
def test_kl_training_step_compiles_like_eager_inductor():
    from torch._inductor import config as inductor_config

    # fallback_random: inductor's own RNG would draw another KL target sample than eager.
    with inductor_config.patch(fallback_random=True):
        check_compiled_step("inductor", "matrix", 2**20)


# ---------------------------------------------------------------- item 7: duplicates, half precision
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,repeats", [(8, 16, 1), (16, 64, 4), (5, 8, 2)])
def test_kl_duplicate_codes_are_finite_and_match_reference(dtype, n, k, repeats):
    # MPerClassSampler repeats the images of small classes: exact duplicate codes, nu(z; z) = 0.
    base = codes(n, k, dtype, seed=n + k)
    z = torch.cat([base] + [base[: n // 2]] * repeats).requires_grad_()
    reg = EmpiricalKLRegularizer()
    torch.manual_seed(3)
    target = reg.sample_target(len(z), k, z)
    value = fixed_target(reg, target)(z)
    assert value.dtype == dtype and torch.isfinite(value)
    floor = max(1e-8, torch.finfo(dtype).tiny)  # float16: 6.1e-5, as 1e-8 rounds to 0 there
    expected = ref_kl(z.detach(), target, floor)
    assert value.item() == pytest.approx(expected, rel=TOL[dtype], abs=TOL[dtype])
    value.backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad).all()


def test_kl_distance_floor_is_representable():
    reg = EmpiricalKLRegularizer()
    assert reg.distance_floor(torch.float16) == torch.finfo(torch.float16).tiny  # 6.1e-5
    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        assert reg.distance_floor(dtype) == 1e-8
    for dtype in DTYPES:
        floor = torch.tensor(reg.distance_floor(dtype), dtype=dtype)
        assert floor > 0 and torch.isfinite(1 / floor)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gap", [6e-8, 1e-6, 1e-4, 1e-3])
def test_kl_near_duplicates_in_half_precision_have_finite_gradients(dtype, gap):
    # Pairs a few float16 ulps apart (near 0, where float16 is finest): the gradient of
    # log nu is about 1 / nu, which must fit in the codes' dtype (max 65504 in float16).
    z = codes(12, 16, torch.float64, seed=9) * 0.01
    z[6:] = z[:6]
    z[6:, 0] += gap
    z = z.to(dtype).requires_grad_()
    for full_estimate in (False, True):
        z.grad = None
        value = EmpiricalKLRegularizer(full_estimate=full_estimate)(z)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(z.grad).all(), full_estimate


@pytest.mark.parametrize(
    "dtype,grad_tol", [(torch.float16, 2e-2), (torch.bfloat16, 5e-2), (torch.float32, 1e-5)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_kl_half_precision_gradient_matches_float64(dtype, grad_tol, seed):
    z = codes(24, 32, dtype, seed=seed).requires_grad_()
    target = codes(24, 32, dtype, seed=seed + 100)  # representable in dtype: the same in float64
    reg = fixed_target(EmpiricalKLRegularizer(), target)
    search = reg.nearest_neighbours
    chosen = []
    reg.nearest_neighbours = lambda *a: chosen.append(search(*a)) or chosen[-1]
    reg(z).backward()
    # float64 on the same (rounded) codes and the same neighbours: the half-precision search
    # may pick another of two neighbours that tie at its resolution, a different valid choice.
    z64 = z.detach().double().requires_grad_()
    reg64 = fixed_target(EmpiricalKLRegularizer(), target)
    reg64.nearest_neighbours = lambda *a: chosen[0]
    reg64(z64).backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad).all()
    assert (z.grad.double() - z64.grad).norm() <= grad_tol * z64.grad.norm()
    # ... and those neighbours are nearest up to the search's resolution.
    to_target, to_other = chosen[0]
    d_target = torch.cdist(z64.detach(), target.double())
    d_batch = torch.cdist(z64.detach(), z64.detach()).fill_diagonal_(float("inf"))
    rows = torch.arange(len(z))
    assert torch.allclose(d_target[rows, to_target], d_target.min(dim=1).values, rtol=TOL[dtype])
    assert torch.allclose(d_batch[rows, to_other], d_batch.min(dim=1).values, rtol=TOL[dtype])


# ---------------------------------------------------------------- item 8: overflow, NaN / inf
@pytest.mark.parametrize("scale", [1e19, 1e20])
@pytest.mark.parametrize("n", [8, 40])  # cdist: direct below 25 rows, through a matmul above
def test_kl_refuses_overflowing_codes(scale, n):
    z = codes(n, 16, torch.float32, seed=n) * scale
    with pytest.raises(ValueError, match=r"\[0, 1\].*sigmoid"):
        EmpiricalKLRegularizer()(z)
    # Without the range check, the overflowing distances themselves are refused by name.
    with pytest.raises(NonFiniteLossError, match=r"log nu\(z; u\) - log nu\(z; z\) are not finite"):
        EmpiricalKLRegularizer(range_tolerance=None)(z)


def test_kl_refuses_overflow_in_float64_too():
    z = codes(10, 16, torch.float64, seed=4) * 1e160
    with pytest.raises(NonFiniteLossError, match="not finite"):
        EmpiricalKLRegularizer(range_tolerance=None)(z)
    # Large but finite distances still give the reference value (no false alarm).
    z = codes(10, 16, torch.float64, seed=4) * 1e100
    reg = EmpiricalKLRegularizer(range_tolerance=None)
    torch.manual_seed(0)
    target = reg.sample_target(10, 16, z)
    assert fixed_target(reg, target)(z).item() == pytest.approx(ref_kl(z, target, 1e-8), rel=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_kl_refuses_nan_and_inf_codes(dtype, bad):
    z = codes(6, 8, dtype, seed=2)
    z[3, 5] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        EmpiricalKLRegularizer()(z)
    with pytest.raises(ValueError, match="NaN or infinite"):  # before any range check
        EmpiricalKLRegularizer(range_tolerance=None)(z)


# ---------------------------------------------------------------- item 9: the target's support
@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_rejects_raw_logits_and_tanh_codes(dtype):
    g = torch.Generator().manual_seed(11)
    logits = (3 * torch.randn(64, 32, generator=g)).to(dtype)
    for bad in (logits, torch.tanh(logits), logits.sigmoid() * 2):
        with pytest.raises(
            ValueError, match=r"range over \[.*\]: pass codes in \[0, 1\], e\.g\. torch\.sigmoid"
        ):
            EmpiricalKLRegularizer()(bad)
    # Inside a PML loss (as its embedding_regularizer) the error reaches the caller too.
    loss_fn = SemanticDistanceLoss(
        LabelDistance(num_classes=3), embedding_regularizer=EmpiricalKLRegularizer()
    )
    with pytest.raises(ValueError, match="sigmoid"):
        loss_fn(logits, torch.randint(0, 3, (64,), generator=g))
    # The sigmoid of the same logits is fine.
    assert torch.isfinite(EmpiricalKLRegularizer()(logits.sigmoid()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_accepts_codes_in_unit_interval_up_to_the_tolerance(dtype):
    binary = torch.randint(0, 2, (16, 8), generator=torch.Generator().manual_seed(12)).to(dtype)
    assert torch.isfinite(EmpiricalKLRegularizer()(binary))  # exactly 0 and 1
    z = codes(16, 8, torch.float64, seed=13)
    z[0, 0], z[1, 1] = -5e-4, 1 + 5e-4  # rounding just outside
    assert torch.isfinite(EmpiricalKLRegularizer()(z.to(dtype)))
    z[1, 1] = 1.01
    with pytest.raises(ValueError, match="range_tolerance"):
        EmpiricalKLRegularizer()(z.to(dtype))
    assert torch.isfinite(EmpiricalKLRegularizer(range_tolerance=0.02)(z.to(dtype)))


def test_kl_range_check_can_be_turned_off_and_is_validated():
    logits = 3 * torch.randn(32, 16, generator=torch.Generator().manual_seed(14))
    assert torch.isfinite(EmpiricalKLRegularizer(range_tolerance=None)(logits))
    for bad in (-1e-3, float("nan")):
        with pytest.raises(ValueError, match="range_tolerance"):
            EmpiricalKLRegularizer(range_tolerance=bad)
