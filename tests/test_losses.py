"""SemanticDistanceLoss, EmpiricalKLRegularizer and SHREDLoss against slow references."""

import itertools
import math

import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import ContrastiveLoss
from pytorch_metric_learning.miners import MultiSimilarityMiner, TripletMarginMiner
from pytorch_metric_learning.reducers import DoNothingReducer, SumReducer, ThresholdReducer
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper

from pml_shrewd import EmpiricalKLRegularizer, SemanticDistance, SemanticDistanceLoss, SHREDLoss


class TableDistance(SemanticDistance):
    """A provider over a fixed table, written here so the tests depend on nothing else."""

    def __init__(self, table):
        self.table = torch.as_tensor(table, dtype=torch.float64)
        self.num_ids = len(self.table)

    def pairwise(self, ids_a, ids_b):
        return self.table.to(ids_a.device)[ids_a][:, ids_b]


def random_table(num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(num_classes, num_classes, generator=g, dtype=torch.float64)
    t = (t + t.T) / 2
    t.fill_diagonal_(0)
    return t


# ---------------------------------------------------------------- slow references
def ref_sim_loss(
    z, y, table, gamma=0.1, rho=2.0, ref_z=None, ref_y=None, pairs=None, error="squared", balance=False
):
    """L_sim by explicit loops over pairs, in float64 Python numbers."""
    z = z.double().tolist()
    y = y.tolist()
    same = ref_z is None
    rz = z if same else ref_z.double().tolist()
    ry = y if same else ref_y.tolist()
    if pairs is None:
        pairs = [(i, j) for i in range(len(z)) for j in range(len(rz)) if not (same and i == j)]
    dz = [sum(abs(a - b) for a, b in zip(z[i], rz[j])) for i, j in pairs]
    dy = [float(table[y[i], ry[j]]) for i, j in pairs]
    tau_z = max(sum(dz) / len(dz), 1e-8)
    tau_y = max(sum(dy) / len(dy), 1e-8)
    count = {b: dy.count(b) for b in dy}  # pairs per distinct semantic distance
    terms = []
    for a, b in zip(dz, dy):
        w = gamma**rho / (gamma + b) ** rho
        if balance:
            w *= len(dy) / (len(count) * count[b])
        e = a / tau_z - b / tau_y
        terms.append(w * (e * e if error == "squared" else abs(e)))
    return sum(terms) / len(terms), terms


def ref_kl(z, target, eps=1e-8):
    """Per-code log nu(z; u) - log nu(z; z) with explicit nearest-neighbour search."""
    z = z.double().tolist()
    u = target.double().tolist()
    out = []
    for i, zi in enumerate(z):
        to_u = min(math.dist(zi, uj) for uj in u)
        to_z = min(math.dist(zi, zj) for j, zj in enumerate(z) if j != i)
        out.append(math.log(max(to_u, eps)) - math.log(max(to_z, eps)))
    return out


def tol(dtype):
    return {torch.bfloat16: 5e-2, torch.float16: 3e-2, torch.float32: 1e-4, torch.float64: 1e-9}[dtype]


def random_batch(batch_size, num_bits, num_classes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(batch_size, num_bits, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, num_classes, (batch_size,), generator=g)
    return z.requires_grad_(), y


SHAPES = [(2, 4), (7, 16), (32, 64)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]  # bfloat16: see test_bfloat16_*


# ---------------------------------------------------------------- L_sim
@pytest.mark.parametrize("batch_size,num_bits", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sim_loss_matches_reference(batch_size, num_bits, dtype):
    table = random_table(5, seed=batch_size)
    z, y = random_batch(batch_size, num_bits, 5, dtype, seed=num_bits)
    loss = SemanticDistanceLoss(TableDistance(table))(z, y)
    expected, _ = ref_sim_loss(z.detach(), y, table)
    assert loss.dtype == dtype
    assert loss.item() == pytest.approx(expected, rel=tol(dtype), abs=tol(dtype))
    loss.backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad).all()


@pytest.mark.parametrize(
    "gamma,rho,error", [(0.1, 2.0, "squared"), (0.5, 1.0, "absolute"), (1.0, 3.0, "squared")]
)
def test_sim_loss_hyperparameters(gamma, rho, error):
    table = random_table(4, seed=1)
    z, y = random_batch(12, 8, 4, torch.float64, seed=2)
    loss = SemanticDistanceLoss(TableDistance(table), gamma=gamma, rho=rho, error=error)(z, y)
    expected, _ = ref_sim_loss(z.detach(), y, table, gamma=gamma, rho=rho, error=error)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_classes,gamma", [(3, 0.1), (7, 0.4)])
def test_sim_loss_balance_levels_matches_reference(dtype, num_classes, gamma):
    # A three-level table, as a hierarchy gives: same class, siblings, root.
    levels = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    table = levels[
        torch.randint(1, 3, (num_classes, num_classes), generator=torch.Generator().manual_seed(0))
    ]
    table = torch.maximum(table, table.T).fill_diagonal_(0)
    z, y = random_batch(20, 16, num_classes, dtype, seed=num_classes)
    loss_fn = SemanticDistanceLoss(TableDistance(table), gamma=gamma, balance_levels=True)
    loss = loss_fn(z, y)
    expected, terms = ref_sim_loss(z.detach(), y, table, gamma=gamma, balance=True)
    assert loss.item() == pytest.approx(expected, rel=tol(dtype))
    unbalanced, _ = ref_sim_loss(z.detach(), y, table, gamma=gamma)
    assert abs(expected - unbalanced) > 1e-3 * unbalanced  # the option does something
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # Pair by pair, too (PML's DoNothingReducer returns the unreduced terms).
    raw = SemanticDistanceLoss(
        TableDistance(table), gamma=gamma, balance_levels=True, reducer=DoNothingReducer()
    )
    per_pair = raw(z.detach(), y)["loss"]["losses"].double()
    assert torch.allclose(per_pair, torch.tensor(terms, dtype=torch.float64), rtol=tol(dtype), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sim_loss_with_ref_emb(dtype):
    table = random_table(6, seed=3)
    z, y = random_batch(9, 16, 6, dtype, seed=4)
    rz, ry = random_batch(13, 16, 6, dtype, seed=5)
    loss = SemanticDistanceLoss(TableDistance(table))(z, y, ref_emb=rz, ref_labels=ry)
    expected, _ = ref_sim_loss(z.detach(), y, table, ref_z=rz.detach(), ref_y=ry)
    assert loss.item() == pytest.approx(expected, rel=tol(dtype))
    loss.backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(rz.grad).all()


@pytest.mark.parametrize("miner", [MultiSimilarityMiner(epsilon=0.5), TripletMarginMiner(margin=0.5)])
def test_sim_loss_uses_only_mined_pairs(miner):
    table = random_table(4, seed=6)
    z, y = random_batch(24, 16, 4, torch.float64, seed=7)
    indices_tuple = miner(z, y)
    assert sum(len(t) for t in indices_tuple) > 0
    loss = SemanticDistanceLoss(TableDistance(table))(z, y, indices_tuple)
    if len(indices_tuple) == 3:
        a, p, n = (t.tolist() for t in indices_tuple)
        pairs = list(zip(a, p)) + list(zip(a, n))
    else:
        a1, p, a2, n = (t.tolist() for t in indices_tuple)
        pairs = list(zip(a1, p)) + list(zip(a2, n))
    pairs = sorted(set(pairs))  # each distinct pair once (triplets share their (a, p) pairs)
    expected, _ = ref_sim_loss(z.detach(), y, table, pairs=pairs)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_sim_loss_with_reducers():
    table = random_table(5, seed=8)
    z, y = random_batch(10, 8, 5, torch.float64, seed=9)
    provider = TableDistance(table)
    _, terms = ref_sim_loss(z.detach(), y, table)
    summed = SemanticDistanceLoss(provider, reducer=SumReducer())(z, y)
    assert summed.item() == pytest.approx(sum(terms), rel=1e-9)
    threshold = sorted(terms)[len(terms) // 2]
    thresholded = SemanticDistanceLoss(provider, reducer=ThresholdReducer(low=threshold))(z, y)
    kept = [t for t in terms if t > threshold]
    assert thresholded.item() == pytest.approx(sum(kept) / len(kept), rel=1e-9)
    raw = SemanticDistanceLoss(provider, reducer=DoNothingReducer())(z, y)
    assert raw["loss"]["losses"].shape == (len(terms),)
    assert raw["loss"]["losses"].sum().item() == pytest.approx(sum(terms), rel=1e-9)


def test_sim_loss_batch_permutation_invariance():
    table = random_table(7, seed=10)
    z, y = random_batch(20, 32, 7, torch.float64, seed=11)
    loss_fn = SemanticDistanceLoss(TableDistance(table))
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    assert loss_fn(z, y).item() == pytest.approx(loss_fn(z[perm], y[perm]).item(), rel=1e-12)


def test_sim_loss_is_scale_free():
    table = random_table(5, seed=12)
    z, y = random_batch(16, 16, 5, torch.float64, seed=13)
    loss_fn = SemanticDistanceLoss(TableDistance(table))
    base = loss_fn(z, y).item()
    assert loss_fn(z * 3.7, y).item() == pytest.approx(base, rel=1e-10)
    # With the gradient through tau_z the loss has no component along the scale direction.
    z.grad = None
    loss_fn(z, y).backward()
    assert abs(float((z.grad * z.detach()).sum())) < 1e-10
    # Detached tau_z: same value, but the gradient then has a scale component.
    z.grad = None
    detached = SemanticDistanceLoss(TableDistance(table), detach_tau_z=True)
    value = detached(z, y)
    assert value.item() == pytest.approx(base, rel=1e-12)
    value.backward()
    assert abs(float((z.grad * z.detach()).sum())) > 1e-6


def test_sim_loss_zero_when_code_distances_proportional():
    # Classes at positions on a line; codes repeat the position on every bit, so the
    # Manhattan distance between codes is num_bits * |x_a - x_b|, proportional to d.
    positions = torch.tensor([0.0, 0.1, 0.35, 0.6, 1.0], dtype=torch.float64)
    table = (positions[:, None] - positions[None, :]).abs()
    y = torch.tensor([0, 1, 2, 3, 4, 2, 0, 4])
    z = positions[y][:, None].repeat(1, 16)
    loss = SemanticDistanceLoss(TableDistance(table))(z, y)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    # ...and clearly non-zero once the layout is broken.
    z_broken = z.clone()
    z_broken[0] = 0.9
    assert SemanticDistanceLoss(TableDistance(table))(z_broken, y).item() > 1e-3


def test_sim_loss_duplicates_and_single_class_are_finite():
    table = random_table(3, seed=14)
    z = torch.full((6, 8), 0.5, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(6, dtype=torch.long)
    loss = SemanticDistanceLoss(TableDistance(table), embedding_regularizer=EmpiricalKLRegularizer())(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_sim_loss_weights_close_pairs_more():
    table = torch.tensor([[0.0, 0.1, 1.0], [0.1, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    z, y = random_batch(9, 8, 3, torch.float64, seed=15)
    raw = SemanticDistanceLoss(TableDistance(table), reducer=DoNothingReducer())(z, y)["loss"]
    rows, cols = raw["indices"]
    weight = (0.1 / (0.1 + table[y[rows], y[cols]])) ** 2
    _, terms = ref_sim_loss(z.detach(), y, table)
    assert torch.allclose(raw["losses"], torch.tensor(terms, dtype=torch.float64))
    assert weight.max() == 1.0 and weight.min() == pytest.approx((0.1 / 1.1) ** 2)


# ---------------------------------------------------------------- L_KL
@pytest.mark.parametrize("batch_size,num_bits", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_target_samples,pool", [(None, None), (5, None), (None, 4096)])
def test_kl_matches_reference(batch_size, num_bits, dtype, num_target_samples, pool):
    z, _ = random_batch(batch_size, num_bits, 2, dtype, seed=batch_size + num_bits)
    reg = EmpiricalKLRegularizer(num_target_samples=num_target_samples, target_pool_size=pool)
    torch.manual_seed(123)
    value = reg(z)
    torch.manual_seed(123)
    target = reg.sample_target(num_target_samples or batch_size, num_bits, z)
    expected = ref_kl(z.detach(), target)
    assert value.item() == pytest.approx(sum(expected) / len(expected), rel=tol(dtype), abs=tol(dtype))
    value.backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad).all()


def test_kl_full_estimate_adds_constants():
    z, _ = random_batch(10, 6, 2, torch.float64, seed=16)
    torch.manual_seed(0)
    plain = EmpiricalKLRegularizer()(z).item()
    torch.manual_seed(0)
    full = EmpiricalKLRegularizer(full_estimate=True)(z).item()
    assert full == pytest.approx(6 * plain + math.log(10 / 9), rel=1e-10)


@pytest.mark.parametrize("pool", [None, 2**16])
@pytest.mark.parametrize("alpha,beta", [(0.1, 0.1), (0.3, 0.7)])
def test_kl_target_sample_follows_beta(pool, alpha, beta):
    stats = pytest.importorskip("scipy.stats")
    reg = EmpiricalKLRegularizer(alpha=alpha, beta=beta, target_pool_size=pool)
    torch.manual_seed(1)
    u = reg.sample_target(5000, 4, torch.zeros(1, dtype=torch.float64))
    assert u.shape == (5000, 4) and u.dtype == torch.float64
    assert torch.isfinite(u).all() and u.min() >= 0 and u.max() <= 1
    # Kolmogorov-Smirnov against the exact Beta CDF: a wrong sampler fails by far.
    result = stats.kstest(u.flatten().numpy(), stats.beta(alpha, beta).cdf)
    assert result.statistic < 0.015
    # Fresh draws on every call, pooled or not.
    assert not torch.equal(u, reg.sample_target(5000, 4, u))


def test_kl_prefers_near_binary_uniform_codes_to_a_collapsed_point():
    g = torch.Generator().manual_seed(17)
    binary = torch.randint(0, 2, (256, 32), generator=g).double()
    near_binary = (binary + 0.02 * torch.rand(256, 32, generator=g)).clamp(0, 1)
    collapsed = 0.5 + 0.01 * torch.rand(256, 32, generator=g)
    reg = EmpiricalKLRegularizer()
    torch.manual_seed(2)
    kl_binary = reg(near_binary).item()
    torch.manual_seed(2)
    kl_collapsed = reg(collapsed).item()
    assert kl_binary < kl_collapsed - 1.0


def test_kl_duplicates_are_finite():
    z = torch.rand(8, 16, dtype=torch.float64)
    z = torch.cat([z, z[:3]]).requires_grad_()
    value = EmpiricalKLRegularizer()(z)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()


def test_kl_batch_permutation_invariance():
    z, _ = random_batch(30, 16, 2, torch.float64, seed=18)
    reg = EmpiricalKLRegularizer(num_target_samples=40)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    a = reg(z).item()
    torch.manual_seed(3)
    b = reg(z[perm]).item()
    assert a == pytest.approx(b, rel=1e-12)


def test_kl_as_embedding_regularizer_of_any_pml_loss():
    z, y = random_batch(16, 8, 3, torch.float64, seed=19)
    reg = EmpiricalKLRegularizer()
    plain = ContrastiveLoss(distance=LpDistance(normalize_embeddings=False))
    with_reg = ContrastiveLoss(
        distance=LpDistance(normalize_embeddings=False), embedding_regularizer=reg, embedding_reg_weight=0.3
    )
    torch.manual_seed(4)
    total = with_reg(z, y)
    torch.manual_seed(4)
    expected = plain(z, y) + 0.3 * reg(z)
    assert total.item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("num_target_samples", [None, 9])
def test_kl_with_reducers(num_target_samples):
    z, _ = random_batch(14, 8, 2, torch.float64, seed=30)

    def run(reducer):
        reg = EmpiricalKLRegularizer(num_target_samples=num_target_samples, reducer=reducer)
        torch.manual_seed(7)
        value = reg(z)
        torch.manual_seed(7)
        return value, ref_kl(z.detach(), reg.sample_target(num_target_samples or 14, 8, z))

    summed, terms = run(SumReducer())
    assert summed.item() == pytest.approx(sum(terms), rel=1e-9)
    raw, terms = run(DoNothingReducer())
    assert raw["loss"]["reduction_type"] == "element"
    assert raw["loss"]["indices"].tolist() == list(range(14))
    assert torch.allclose(raw["loss"]["losses"], torch.tensor(terms, dtype=torch.float64), rtol=1e-9)
    threshold = sorted(terms)[len(terms) // 2]
    low, terms = run(ThresholdReducer(low=threshold))
    kept = [t for t in terms if t > threshold]
    assert 0 < len(kept) < len(terms)
    assert low.item() == pytest.approx(sum(kept) / len(kept), rel=1e-9)
    low.backward()
    # Only the kept codes (and the nearest codes they pull) get gradient: a dropped code that is no
    # kept code's nearest neighbour has none.
    assert torch.isfinite(z.grad).all() and (z.grad.abs().sum(dim=1) == 0).any()
    both, terms = run(ThresholdReducer(low=sorted(terms)[2], high=sorted(terms)[-3]))
    kept = [t for t in terms if sorted(terms)[2] < t < sorted(terms)[-3]]
    assert both.item() == pytest.approx(sum(kept) / len(kept), rel=1e-9)


def test_kl_reducer_inside_a_loss_as_embedding_regularizer():
    table = random_table(4, seed=31)
    z, y = random_batch(12, 8, 4, torch.float64, seed=32)
    reg = EmpiricalKLRegularizer(reducer=SumReducer())
    loss_fn = SemanticDistanceLoss(TableDistance(table), embedding_regularizer=reg, embedding_reg_weight=0.25)
    torch.manual_seed(8)
    total = loss_fn(z, y)
    torch.manual_seed(8)
    terms = ref_kl(z.detach(), reg.sample_target(12, 8, z))
    expected, _ = ref_sim_loss(z.detach(), y, table)
    # The loss's own reducer (mean over pairs) is untouched; the regularizer sums over codes.
    assert total.item() == pytest.approx(expected + 0.25 * sum(terms), rel=1e-9)


# ---------------------------------------------------------------- composition
def test_sim_plus_kl_equals_sum_of_parts():
    table = random_table(4, seed=20)
    z, y = random_batch(16, 8, 4, torch.float64, seed=21)
    reg = EmpiricalKLRegularizer()
    loss_fn = SemanticDistanceLoss(TableDistance(table), embedding_regularizer=reg, embedding_reg_weight=0.5)
    torch.manual_seed(5)
    total = loss_fn(z, y)
    torch.manual_seed(5)
    kl = reg(z)
    expected, _ = ref_sim_loss(z.detach(), y, table)
    assert total.item() == pytest.approx(expected + 0.5 * kl.item(), rel=1e-10)


def test_shred_loss_matches_parts():
    table = random_table(5, seed=22)
    z, y = random_batch(12, 8, 5, torch.float64, seed=23)
    loss_fn = SHREDLoss(TableDistance(table), num_classes=5, embedding_size=8, lambda_kl=0.2, lambda_cls=0.7)
    loss_fn = loss_fn.double()
    torch.manual_seed(6)
    total = loss_fn(z, y)
    torch.manual_seed(6)
    kl = EmpiricalKLRegularizer()(z).item()
    logits = z.detach() @ loss_fn.classifier.weight.detach().T + loss_fn.classifier.bias.detach()
    ce = [torch.logsumexp(logits[i], 0).item() - logits[i, y[i]].item() for i in range(12)]
    expected = ref_sim_loss(z.detach(), y, table)[0] + 0.2 * kl + 0.7 * sum(ce) / 12
    assert total.item() == pytest.approx(expected, rel=1e-8)
    total.backward()
    assert loss_fn.classifier.weight.grad is not None and torch.isfinite(z.grad).all()
    assert {n for n, _ in loss_fn.named_parameters()} == {"classifier.weight", "classifier.bias"}


def test_shred_ablations_and_shared_classifier():
    z, y = random_batch(10, 8, 3, torch.float64, seed=24)
    head = torch.nn.Linear(8, 3).double()
    cls_only = SHREDLoss(None, num_classes=3, embedding_size=8, lambda_sim=0, lambda_kl=0, classifier=head)
    assert list(cls_only.parameters()) == []  # the model owns the shared head
    expected = torch.nn.functional.cross_entropy(head(z), y)
    assert cls_only(z, y).item() == pytest.approx(expected.item(), rel=1e-10)
    with pytest.raises(IndexError, match="class id 7"):
        cls_only(z, torch.full((10,), 7))
    with pytest.raises(ValueError, match="semantic_distance"):
        SHREDLoss(None, num_classes=3, embedding_size=8)


def test_distributed_wrapper_outside_ddp_is_the_plain_loss():
    table = random_table(4, seed=25)
    z, y = random_batch(12, 8, 4, torch.float64, seed=26)
    loss_fn = SemanticDistanceLoss(TableDistance(table))
    with pytest.warns(UserWarning, match="non-distributed"):
        wrapped = DistributedLossWrapper(loss_fn)(z, y)
    assert wrapped.item() == pytest.approx(loss_fn(z, y).item(), rel=1e-12)


# ---------------------------------------------------------------- half precision
class SpyDistance(LpDistance):
    """An LpDistance that records the dtype and device its distance matrices are computed in."""

    def __init__(self, **kwargs):
        super().__init__(normalize_embeddings=False, **kwargs)
        self.seen = []

    def compute_mat(self, query_emb, ref_emb):
        self.seen.append((query_emb.dtype, query_emb.device.type))
        return super().compute_mat(query_emb, ref_emb)


@pytest.mark.parametrize("dtype,grad_tol", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_half_precision_sim_gradient_matches_float64(dtype, grad_tol, seed):
    table = random_table(5, seed=seed)
    z, y = random_batch(16, 16, 5, dtype, seed=seed)
    SemanticDistanceLoss(TableDistance(table))(z, y).backward()
    z64 = z.detach().double().requires_grad_()  # the same (rounded) codes
    SemanticDistanceLoss(TableDistance(table))(z64, y).backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad).all()
    assert (z.grad.double() - z64.grad).norm() <= grad_tol * z64.grad.norm()


def cdist_runs(dtype, device):
    """Whether plain torch.cdist (forward and backward) works in this dtype on this device."""
    x = torch.rand(3, 4, device=device).to(dtype).requires_grad_()
    try:
        torch.cdist(x, x.detach() + 1, p=1.0).sum().backward()
    except (NotImplementedError, RuntimeError):
        return False
    return True


def check_bfloat16_path(device):
    table = random_table(5, seed=33)
    z64, y = random_batch(10, 16, 5, torch.float64, seed=34)
    # bfloat16 goes through unchanged where torch.cdist has the kernel, else through float32.
    computed_in = torch.bfloat16 if cdist_runs(torch.bfloat16, device) else torch.float32
    for dtype, expected_in in [(torch.bfloat16, computed_in), (torch.float16, torch.float16)]:
        z = z64.detach().to(device, dtype).requires_grad_()
        sim_distance, kl_distance = SpyDistance(p=1), SpyDistance(p=2)
        sim = SemanticDistanceLoss(TableDistance(table), distance=sim_distance)(z, y.to(device))
        kl = EmpiricalKLRegularizer(distance=kl_distance)(z)
        (sim + kl).backward()
        assert sim.dtype == kl.dtype == z.grad.dtype == dtype and torch.isfinite(z.grad).all()
        assert sim_distance.seen == kl_distance.seen == [(expected_in, device)]
        expected, _ = ref_sim_loss(z.detach().cpu(), y, table)
        assert sim.item() == pytest.approx(expected, rel=tol(dtype), abs=tol(dtype))
    return computed_in


def test_bfloat16_on_cpu_computes_distances_in_float32():
    # torch.cdist, behind PML's distances, has no bfloat16 CPU kernel ('"cdist" not implemented for
    # 'BFloat16''): bfloat16 codes on CPU (e.g. from CPU autocast) get their distance matrices in
    # float32, cast back; the loss, its gradient and every other dtype stay as they are.
    if not cdist_runs(torch.bfloat16, "cpu"):
        with pytest.raises(NotImplementedError, match="cdist"):
            LpDistance(p=1, normalize_embeddings=False)(torch.rand(4, 8, dtype=torch.bfloat16))
    check_bfloat16_path("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bfloat16_on_gpu_goes_through_unchanged_where_torch_can():
    check_bfloat16_path("cuda")


# ---------------------------------------------------------------- bad input
@pytest.fixture
def loss_fn():
    return SemanticDistanceLoss(TableDistance(random_table(4, seed=27)))


def test_error_labels_outside_provider_range(loss_fn):
    with pytest.raises(IndexError, match=r"id 9 .*\[0, 3\]"):
        loss_fn(torch.rand(5, 8), torch.tensor([0, 1, 2, 3, 9]))


def test_error_two_dimensional_labels(loss_fn):
    with pytest.raises(ValueError, match="1D"):
        loss_fn(torch.rand(4, 8), torch.zeros(4, 1, dtype=torch.long))


def test_error_length_mismatch(loss_fn):
    with pytest.raises(ValueError, match="Number of embeddings must equal number of labels"):
        loss_fn(torch.rand(5, 8), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_error_nan_embeddings(loss_fn, bad):
    z = torch.rand(5, 8)
    z[2, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss_fn(z, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or infinite"):
        EmpiricalKLRegularizer()(z)


def test_error_empty_batch(loss_fn):
    with pytest.raises(ValueError, match="empty batch"):
        loss_fn(torch.rand(0, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        EmpiricalKLRegularizer()(torch.rand(0, 8))


def test_error_batch_of_one(loss_fn):
    with pytest.raises(ValueError, match="at least two"):
        loss_fn(torch.rand(1, 8), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="at least two"):
        EmpiricalKLRegularizer()(torch.rand(1, 8))


def test_error_missing_labels_and_bad_arguments(loss_fn):
    with pytest.raises(ValueError, match="needs labels"):
        loss_fn(torch.rand(4, 8))
    with pytest.raises(TypeError, match="provider"):
        SemanticDistanceLoss("wordnet")
    with pytest.raises(ValueError, match="gamma"):
        SemanticDistanceLoss(TableDistance(random_table(2, 0)), gamma=0)
    with pytest.raises(ValueError, match="alpha and beta"):
        EmpiricalKLRegularizer(alpha=0)


def test_all_pairs_count():
    for b in (2, 5):
        raw = SemanticDistanceLoss(TableDistance(random_table(3, 0)), reducer=DoNothingReducer())(
            torch.rand(b, 4), torch.zeros(b, dtype=torch.long)
        )
        rows, cols = raw["loss"]["indices"]
        assert sorted(zip(rows.tolist(), cols.tolist())) == [
            (i, j) for i, j in itertools.product(range(b), range(b)) if i != j
        ]
