"""The losses as PML clients: CrossBatchMemory, miners' triplets, dtypes, scales, labels, arguments.

Every value is checked against a slow reference written here with explicit loops in float64
Python numbers (issue 19).
"""

import math
import random

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.miners import MultiSimilarityMiner, TripletMarginMiner
from pytorch_metric_learning.reducers import DoNothingReducer
from test_losses import TableDistance, random_table  # the same small provider and table

import pml_shrewd
from pml_shrewd import SemanticDistanceLoss, SHREDLoss
from pml_shrewd.losses import CrossBatchMemory, NonFiniteLossError


def random_batch(batch_size, num_bits, num_classes, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.rand(batch_size, num_bits, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, num_classes, (batch_size,), generator=g)
    return z.requires_grad_(), y


def tol(dtype):
    return {torch.bfloat16: 5e-2, torch.float16: 3e-2, torch.float32: 1e-4, torch.float64: 1e-9}[dtype]


# ---------------------------------------------------------------- slow references
def ref_sim(z, y, table, pairs, ref_z=None, ref_y=None, gamma=0.1, rho=2.0):
    """L_sim over an explicit list of (row, col) pairs, by loops in float64 Python numbers."""
    z = z.detach().double().tolist()
    rz = z if ref_z is None else ref_z.detach().double().tolist()
    y = y.tolist()
    ry = y if ref_y is None else ref_y.tolist()
    dz = [sum(abs(a - b) for a, b in zip(z[i], rz[j])) for i, j in pairs]
    dy = [float(table[y[i], ry[j]]) for i, j in pairs]
    tau_z, tau_y = sum(dz) / len(dz), sum(dy) / len(dy)
    total = 0.0
    for a, b in zip(dz, dy):
        ez = a / tau_z if tau_z > 0 else 0.0
        ey = b / tau_y if tau_y > 0 else 0.0
        total += gamma**rho / (gamma + b) ** rho * (ez - ey) ** 2
    return total / len(pairs)


def ref_ce(z, y, weight, bias):
    """Mean softmax cross-entropy of a linear classifier, by loops."""
    z, w, b = z.detach().double().tolist(), weight.detach().double().tolist(), bias.detach().double().tolist()
    out = []
    for zi, yi in zip(z, y.tolist()):
        logits = [sum(a * c for a, c in zip(zi, wk)) + bk for wk, bk in zip(w, b)]
        m = max(logits)
        out.append(m + math.log(sum(math.exp(v - m) for v in logits)) - logits[yi])
    return sum(out) / len(out)


class RefMemory:
    """PML's cross-batch memory by hand: a circular list of slots, filled in order."""

    def __init__(self, size):
        self.size, self.codes, self.labels, self.next = size, [None] * size, [None] * size, 0
        self.filled = False

    def enqueue(self, codes, labels):
        slots = []
        for c, lab in zip(codes.detach(), labels.tolist()):
            self.codes[self.next], self.labels[self.next] = c.double(), lab
            slots.append(self.next)
            self.next = (self.next + 1) % self.size
            self.filled = self.filled or self.next == 0
        return slots

    def contents(self):
        n = self.size if self.filled else self.next
        return torch.stack(self.codes[:n]), torch.tensor(self.labels[:n])


def ref_memory_pairs(num_queries, num_slots, own_slots=None):
    """Every (query, slot) pair, less each query's own slot."""
    return [
        (i, j) for i in range(num_queries) for j in range(num_slots) if own_slots is None or j != own_slots[i]
    ]


def ref_mined_pairs(indices_tuple, own_slots=None):
    """Distinct pairs of a miner's output, less self-comparisons (PML: a positive at its own slot)."""
    t = [x.tolist() for x in indices_tuple]

    def own(i, j):
        return own_slots is not None and j == own_slots[i]

    if len(t) == 3:
        triplets = [(a, p, n) for a, p, n in zip(*t) if not own(a, p)]
        pairs = [(a, p) for a, p, _ in triplets] + [(a, n) for a, _, n in triplets]
    else:
        pairs = [(a, p) for a, p in zip(t[0], t[1]) if not own(a, p)] + list(zip(t[2], t[3]))
    return sorted(set(pairs))


# ---------------------------------------------------------------- item 1: CrossBatchMemory
def test_pml_memory_refuses_our_losses_and_ours_accepts_them():
    provider = TableDistance(random_table(4, 0))
    with pytest.raises(Exception, match="not supported for SemanticDistanceLoss"):
        pml_losses.CrossBatchMemory(SemanticDistanceLoss(provider), 8)
    for loss in (SemanticDistanceLoss(provider), SHREDLoss(provider, 4, 8)):
        mem = CrossBatchMemory(loss, 8, memory_size=16)
        assert isinstance(mem, pml_losses.CrossBatchMemory) and mem.loss is loss
    assert pml_shrewd.CrossBatchMemory is CrossBatchMemory
    assert "CrossBatchMemory" in pml_shrewd.__all__ and "CrossBatchMemory" in pml_shrewd.losses.__all__

    class MyLoss(SemanticDistanceLoss):
        pass

    CrossBatchMemory(MyLoss(provider), 8)  # subclasses too
    assert set(pml_losses.CrossBatchMemory.supported_losses()) < set(CrossBatchMemory.supported_losses())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("memory_size,batch_size,num_bits", [(10, 4, 8), (12, 6, 16), (7, 7, 4)])
def test_memory_matches_hand_computation_while_filling_and_wrapping(dtype, memory_size, batch_size, num_bits):
    table = random_table(5, seed=memory_size)
    provider = TableDistance(table)
    mem = CrossBatchMemory(SemanticDistanceLoss(provider), num_bits, memory_size=memory_size)
    ref = RefMemory(memory_size)
    for step in range(5):  # fills the memory, then wraps around it
        z, y = random_batch(batch_size, num_bits, 5, dtype, seed=100 * memory_size + step)
        loss = mem(z, y)
        slots = ref.enqueue(z, y)
        rz, ry = ref.contents()
        expected = ref_sim(z, y, table, ref_memory_pairs(batch_size, len(rz), slots), rz, ry)
        assert loss.dtype == dtype
        assert loss.item() == pytest.approx(expected, rel=tol(dtype), abs=tol(dtype))
        loss.backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert mem.has_been_filled and not mem.embedding_memory.requires_grad


@pytest.mark.parametrize("miner", [MultiSimilarityMiner(epsilon=0.5), TripletMarginMiner(margin=0.5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_memory_with_a_miner_matches_hand_computation(miner, dtype):
    table = random_table(4, seed=1)
    provider = TableDistance(table)
    mem = CrossBatchMemory(SemanticDistanceLoss(provider), 16, memory_size=20, miner=miner)
    ref = RefMemory(20)
    for step in range(4):
        z, y = random_batch(8, 16, 4, dtype, seed=step)
        loss = mem(z, y)
        slots = ref.enqueue(z, y)
        rz, ry = ref.contents()
        mined = miner(z.detach(), y, rz.to(dtype), ry)  # the same miner on the same memory
        pairs = ref_mined_pairs(mined, own_slots=slots)
        assert pairs, "the probe needs mined pairs"
        expected = ref_sim(z, y, table, pairs, rz, ry)
        assert loss.item() == pytest.approx(expected, rel=tol(dtype))
        loss.backward()
        assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_memory_with_enqueue_mask_matches_hand_computation(dtype):
    table = random_table(5, seed=2)
    mem = CrossBatchMemory(SemanticDistanceLoss(TableDistance(table)), 8, memory_size=9)
    ref = RefMemory(9)
    g = torch.Generator().manual_seed(3)
    for step in range(5):
        z, y = random_batch(10, 8, 5, dtype, seed=50 + step)
        mask = torch.zeros(10, dtype=torch.bool)
        mask[torch.randperm(10, generator=g)[:4]] = True  # 4 rows only fill the memory
        loss = mem(z, y, enqueue_mask=mask)
        ref.enqueue(z[mask], y[mask])
        rz, ry = ref.contents()
        q, qy = z[~mask], y[~mask]
        expected = ref_sim(q, qy, table, ref_memory_pairs(len(q), len(rz)), rz, ry)
        assert loss.item() == pytest.approx(expected, rel=tol(dtype))
        loss.backward()
        assert torch.isfinite(z.grad).all()
        assert (z.grad[mask] == 0).all()  # enqueued rows are constants in the memory


def test_shred_in_memory_matches_parts():
    table = random_table(5, seed=4)
    loss_fn = SHREDLoss(TableDistance(table), 5, 8, lambda_kl=0, lambda_cls=0.5).double()
    mem = CrossBatchMemory(loss_fn, 8, memory_size=10)
    ref = RefMemory(10)
    for step in range(4):
        z, y = random_batch(6, 8, 5, torch.float64, seed=70 + step)
        loss = mem(z, y)
        slots = ref.enqueue(z, y)
        rz, ry = ref.contents()
        sim = ref_sim(z, y, table, ref_memory_pairs(6, len(rz), slots), rz, ry)
        ce = ref_ce(z, y, loss_fn.classifier.weight, loss_fn.classifier.bias)
        assert loss.item() == pytest.approx(sim + 0.5 * ce, rel=1e-9)


def test_memory_with_pml_loss_equals_pml_memory():
    z, y = random_batch(8, 8, 3, torch.float64, seed=5)
    ours = CrossBatchMemory(pml_losses.ContrastiveLoss(), 8, memory_size=12)
    theirs = pml_losses.CrossBatchMemory(pml_losses.ContrastiveLoss(), 8, memory_size=12)
    for _ in range(3):
        assert ours(z, y).item() == pytest.approx(theirs(z, y).item(), rel=1e-12)


def test_memory_labels_as_list_and_bad_arguments():
    table = random_table(4, seed=6)
    z, y = random_batch(5, 8, 4, torch.float64, seed=7)
    a = CrossBatchMemory(SemanticDistanceLoss(TableDistance(table)), 8, memory_size=10)
    b = CrossBatchMemory(SemanticDistanceLoss(TableDistance(table)), 8, memory_size=10)
    assert a(z, y.tolist()).item() == pytest.approx(b(z, y).item(), rel=1e-12)
    with pytest.raises(ValueError, match="embedding_size"):
        CrossBatchMemory(SemanticDistanceLoss(TableDistance(table)), 0)
    with pytest.raises(ValueError, match="memory_size"):
        CrossBatchMemory(SemanticDistanceLoss(TableDistance(table)), 8, memory_size=-3)
    with pytest.raises(TypeError, match="memory_size"):
        CrossBatchMemory(SemanticDistanceLoss(TableDistance(table)), 8, memory_size=2.5)
    with pytest.raises(ValueError, match="embedding_size=8"):
        a(torch.rand(5, 7, dtype=torch.float64), y)
    with pytest.raises(ValueError, match="exceed memory_size"):
        a(torch.rand(11, 8, dtype=torch.float64), torch.zeros(11, dtype=torch.long))
    with pytest.raises(TypeError, match="boolean mask"):
        a(z, y, enqueue_mask=torch.tensor([1, 0, 1, 0, 0]))
    with pytest.raises(ValueError, match="enqueue_mask must have shape"):
        a(z, y, enqueue_mask=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="one entry per embedding"):
        a(z, y[:3])


# ---------------------------------------------------------------- item 3: SHREDLoss dtypes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch_size,num_bits,num_classes", [(6, 8, 3), (16, 32, 10)])
def test_shred_follows_the_codes_dtype(dtype, batch_size, num_bits, num_classes):
    table = random_table(num_classes, seed=num_bits)
    loss_fn = SHREDLoss(TableDistance(table), num_classes, num_bits, lambda_kl=0, lambda_cls=0.7)
    z, y = random_batch(batch_size, num_bits, num_classes, dtype, seed=batch_size)
    loss = loss_fn(z, y)
    assert loss.dtype == dtype
    w, b = loss_fn.classifier.weight, loss_fn.classifier.bias
    # The reference uses the classifier's weights as rounded to the codes' dtype.
    expected = ref_sim(z, y, table, ref_memory_pairs(batch_size, batch_size, list(range(batch_size))))
    expected += 0.7 * ref_ce(z, y, w.to(dtype), b.to(dtype))
    assert loss.item() == pytest.approx(expected, rel=tol(dtype), abs=tol(dtype))
    loss.backward()
    assert w.dtype == torch.float32 and w.grad.dtype == torch.float32  # parameters keep their dtype
    assert torch.isfinite(w.grad).all() and torch.isfinite(z.grad).all() and z.grad.dtype == dtype


def test_shred_shared_classifier_in_another_dtype():
    z, y = random_batch(10, 8, 3, torch.float64, seed=8)
    head = torch.nn.Linear(8, 3)  # float32, owned by the model
    loss_fn = SHREDLoss(None, 3, 8, lambda_sim=0, lambda_kl=0, classifier=head)
    loss = loss_fn(z, y)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(ref_ce(z, y, head.weight.double(), head.bias.double()), rel=1e-9)
    loss.backward()
    assert head.weight.grad is not None and head.weight.dtype == torch.float32


def test_shred_wrong_embedding_size_is_a_named_error():
    provider = TableDistance(random_table(3, 9))
    with pytest.raises(ValueError, match="embedding_size=9"):
        SHREDLoss(provider, 3, 9)(torch.rand(4, 8), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="classifier maps 8 -> 3"):
        SHREDLoss(provider, 3, 9, classifier=torch.nn.Linear(8, 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        SHREDLoss(None, 3, 8, lambda_sim=0, lambda_kl=0)(torch.full((4, 8), math.nan), torch.zeros(4).long())


# ---------------------------------------------------------------- item 5: triplets become distinct pairs
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch_size", [12, 30])
def test_triplets_give_each_distinct_pair_once(dtype, batch_size):
    table = random_table(4, seed=10)
    z, y = random_batch(batch_size, 16, 4, dtype, seed=batch_size)
    triplets = TripletMarginMiner(margin=0.5)(z, y)
    all_pairs = list(zip(triplets[0].tolist(), triplets[1].tolist())) + list(
        zip(triplets[0].tolist(), triplets[2].tolist())
    )
    distinct = sorted(set(all_pairs))
    assert len(distinct) < len(all_pairs), "the probe needs shared pairs"
    raw = SemanticDistanceLoss(TableDistance(table), reducer=DoNothingReducer())(z, y, triplets)["loss"]
    assert sorted(zip(*(t.tolist() for t in raw["indices"]))) == distinct
    loss = SemanticDistanceLoss(TableDistance(table))(z, y, triplets)
    assert loss.item() == pytest.approx(ref_sim(z, y, table, distinct), rel=tol(dtype))


def test_repeating_some_mined_pairs_changes_nothing():
    table = random_table(4, seed=11)
    z, y = random_batch(16, 8, 4, torch.float64, seed=12)
    a1, p, a2, n = MultiSimilarityMiner(epsilon=0.5)(z, y)
    loss_fn = SemanticDistanceLoss(TableDistance(table))
    once = loss_fn(z, y, (a1, p, a2, n))
    k = max(1, len(a1) // 2)
    twice = loss_fn(z, y, (torch.cat([a1, a1[:k]]), torch.cat([p, p[:k]]), a2, n))
    assert twice.item() == pytest.approx(once.item(), rel=1e-12)


def test_mined_pairs_permutation_invariance():
    table = random_table(5, seed=13)
    z, y = random_batch(20, 16, 5, torch.float64, seed=14)
    triplets = TripletMarginMiner(margin=0.5)(z, y)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    inv = torch.argsort(perm)  # row r of z is row inv[r] of z[perm]
    loss_fn = SemanticDistanceLoss(TableDistance(table))
    permuted = loss_fn(z[perm], y[perm], tuple(inv[t] for t in triplets))
    assert permuted.item() == pytest.approx(loss_fn(z, y, triplets).item(), rel=1e-12)


def test_docstring_says_what_happens_to_triplets_and_positive_only_pairs():
    doc = SemanticDistanceLoss.__doc__
    assert "triplet" in doc and "distinct" in doc and "1 + var(D_z) / mean(D_z)**2" in doc


# ---------------------------------------------------------------- item 6: the pair convention
def test_pair_convention_is_documented_and_holds():
    readme = (__import__("pathlib").Path(__file__).parents[1] / "README.md").read_text()
    for text in (SemanticDistanceLoss.__doc__, readme):
        assert "B / (B - 1)" in text
    # ...and it is what the loss computes: the paper's 1/B^2 sum over all (b, b') times B/(B-1).
    table = random_table(5, seed=15)
    for batch_size in (2, 7, 16):
        z, _ = random_batch(batch_size, 8, 5, torch.float64, seed=batch_size)
        y = torch.arange(batch_size) % 5  # at least two classes
        all_pairs = [(i, j) for i in range(batch_size) for j in range(batch_size)]
        # tau: means over b != b'; the B self-pairs add zero error to the paper's sum.
        zz, yy = z.detach().double(), y.tolist()
        dz = {(i, j): float((zz[i] - zz[j]).abs().sum()) for i, j in all_pairs}
        dy = {(i, j): float(table[yy[i], yy[j]]) for i, j in all_pairs}
        off = [q for q in all_pairs if q[0] != q[1]]
        tz, ty = sum(dz[q] for q in off) / len(off), sum(dy[q] for q in off) / len(off)
        paper = (
            sum(0.01 / (0.1 + dy[q]) ** 2 * (dz[q] / tz - dy[q] / ty) ** 2 for q in all_pairs) / batch_size**2
        )
        loss = SemanticDistanceLoss(TableDistance(table))(z, y)
        assert loss.item() == pytest.approx(paper * batch_size / (batch_size - 1), rel=1e-10)


# ---------------------------------------------------------------- item 7: half precision degenerate sets
def one_plus_cv2(z, pairs):
    d = [float((z[i].double() - z[j].double()).abs().sum()) for i, j in pairs]
    mean = sum(d) / len(d)
    return sum(x * x for x in d) / len(d) / mean**2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("batch_size,num_bits", [(4, 8), (16, 32)])
def test_one_class_batch_is_finite_and_equals_one_plus_cv2(dtype, batch_size, num_bits):
    z, _ = random_batch(batch_size, num_bits, 3, dtype, seed=num_bits)
    y = torch.zeros(batch_size, dtype=torch.long)
    loss = SemanticDistanceLoss(TableDistance(random_table(3, 16)))(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    pairs = ref_memory_pairs(batch_size, batch_size, list(range(batch_size)))
    assert loss.item() == pytest.approx(one_plus_cv2(z.detach(), pairs), rel=tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_positive_only_mined_pairs_are_finite(dtype):
    z, y = random_batch(12, 16, 3, dtype, seed=17)
    a1, p, _, _ = MultiSimilarityMiner(epsilon=10.0)(z.detach().float(), y)
    empty = torch.zeros(0, dtype=torch.long)
    loss = SemanticDistanceLoss(TableDistance(random_table(3, 18)))(z, y, (a1, p, empty, empty))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    pairs = sorted(set(zip(a1.tolist(), p.tolist())))
    assert loss.item() == pytest.approx(one_plus_cv2(z.detach(), pairs), rel=tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_identical_codes_are_finite(dtype):
    table = random_table(3, 19)
    z = torch.full((6, 8), 0.5, dtype=dtype, requires_grad=True)
    for y in (torch.zeros(6, dtype=torch.long), torch.tensor([0, 1, 2, 0, 1, 2])):
        loss = SemanticDistanceLoss(TableDistance(table))(z, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
        z.grad = None


# ---------------------------------------------------------------- item 8: scale invariance, overflow
SCALES = {
    torch.float32: [1e-30, 1e-9, 1e-3, 1e3, 1e9, 1e30, 1e37],
    torch.float64: [1e-300, 1e-9, 1e9, 1e300],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("detach_tau_z", [False, True])
def test_scale_invariance_from_tiny_to_huge_codes(dtype, detach_tau_z):
    table = random_table(5, seed=20)
    z, y = random_batch(12, 16, 5, torch.float64, seed=21)
    loss_fn = SemanticDistanceLoss(TableDistance(table), detach_tau_z=detach_tau_z)
    pairs = ref_memory_pairs(12, 12, list(range(12)))
    expected = ref_sim(z, y, table, pairs)
    z0 = z.detach().to(dtype).requires_grad_()
    loss_fn(z0, y).backward()
    for scale in SCALES[dtype]:
        zs = (z.detach() * scale).to(dtype).requires_grad_()
        loss = loss_fn(zs, y)
        assert loss.item() == pytest.approx(expected, rel=10 * tol(dtype)), scale
        loss.backward()
        assert torch.isfinite(zs.grad).all()
        # The gradient of a scale-free loss scales as 1 / scale (subnormal at 1e37 in float32).
        assert torch.allclose(
            zs.grad.double() * scale, z0.grad.double(), rtol=1e-3, atol=1e-4 * z0.grad.abs().max()
        ), scale


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e38), (torch.float64, 1e307), (torch.float16, 1e4)])
def test_overflowing_distances_are_a_named_error(dtype, scale):
    z, y = random_batch(6, 64, 3, torch.float64, seed=22)
    zs = (z.detach() * scale).to(dtype)
    assert torch.isfinite(zs).all()
    with pytest.raises(NonFiniteLossError, match="not finite"):
        SemanticDistanceLoss(TableDistance(random_table(3, 23)))(zs, y)
    assert issubclass(NonFiniteLossError, FloatingPointError)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_nan_and_inf_codes_are_a_named_error(bad, dtype):
    z = torch.rand(5, 8).to(dtype)
    z[1, 2] = bad
    y = torch.tensor([0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        SemanticDistanceLoss(TableDistance(random_table(3, 24)))(z, y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        SHREDLoss(TableDistance(random_table(3, 24)), 3, 8)(z, y)


# ---------------------------------------------------------------- item 10: labels and arguments
@pytest.mark.parametrize("convert", [list, tuple, np.asarray, lambda t: np.asarray(t, dtype=np.int32)])
def test_labels_as_list_or_numpy(convert):
    table = random_table(4, seed=25)
    z, y = random_batch(7, 8, 4, torch.float64, seed=26)
    rz, ry = random_batch(5, 8, 4, torch.float64, seed=27)
    sim = SemanticDistanceLoss(TableDistance(table))
    assert sim(z, convert(y.tolist())).item() == pytest.approx(sim(z, y).item(), rel=1e-12)
    with_ref = sim(z, convert(y.tolist()), ref_emb=rz, ref_labels=convert(ry.tolist()))
    assert with_ref.item() == pytest.approx(sim(z, y, ref_emb=rz, ref_labels=ry).item(), rel=1e-12)
    shred = SHREDLoss(TableDistance(table), 4, 8, lambda_kl=0).double()
    assert shred(z, convert(y.tolist())).item() == pytest.approx(shred(z, y).item(), rel=1e-12)


@pytest.mark.parametrize("labels", [[0.0, 1.0, 2.0], ["a", "b", "c"], np.array([0.5, 1, 2]), {0, 1, 2}])
def test_ambiguous_labels_are_a_named_error(labels):
    with pytest.raises(TypeError, match="integer ids"):
        SemanticDistanceLoss(TableDistance(random_table(3, 28)))(torch.rand(3, 8), labels)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"rho": -1.0}, ValueError, "rho"),
        ({"rho": math.nan}, ValueError, "rho"),
        ({"gamma": 0.0}, ValueError, "gamma"),
        ({"gamma": -0.1}, ValueError, "gamma"),
        ({"gamma": math.inf}, ValueError, "gamma"),
        ({"gamma": "0.1"}, TypeError, "gamma"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": 1.5}, ValueError, "eps"),
        ({"error": "cubic"}, ValueError, "error"),
        ({"balance_levels": "yes"}, TypeError, "balance_levels"),
        ({"detach_tau_z": 1}, TypeError, "detach_tau_z"),
    ],
)
def test_bad_constructor_values_are_named_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SemanticDistanceLoss(TableDistance(random_table(3, 29)), **kwargs)
    with pytest.raises(error, match=match):
        SHREDLoss(TableDistance(random_table(3, 29)), 3, 8, **kwargs)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": 2.5}, TypeError, "num_classes"),
        ({"embedding_size": -1}, ValueError, "embedding_size"),
        ({"lambda_sim": -1.0}, ValueError, "lambda_sim"),
        ({"lambda_kl": math.nan}, ValueError, "lambda_kl"),
        ({"lambda_cls": -0.5}, ValueError, "lambda_cls"),
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"beta": -1.0}, ValueError, "beta"),
        ({"classifier": "head"}, TypeError, "classifier"),
    ],
)
def test_bad_shred_arguments_are_named_errors(kwargs, error, match):
    args = {"num_classes": 3, "embedding_size": 8, **kwargs}
    with pytest.raises(error, match=match):
        SHREDLoss(TableDistance(random_table(3, 30)), **args)


def test_random_reference_several_shapes_and_dtypes():
    """L_sim on random inputs in every dtype against the loop reference (all pairs)."""
    rng = random.Random(31)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for batch_size, num_bits in ((2, 4), (9, 16), (24, 64)):
            table = random_table(6, seed=rng.randrange(1000))
            z, y = random_batch(batch_size, num_bits, 6, dtype, seed=rng.randrange(1000))
            loss = SemanticDistanceLoss(TableDistance(table))(z, y)
            pairs = ref_memory_pairs(batch_size, batch_size, list(range(batch_size)))
            assert loss.dtype == dtype
            assert loss.item() == pytest.approx(ref_sim(z, y, table, pairs), rel=tol(dtype), abs=tol(dtype))
            loss.backward()
            assert torch.isfinite(z.grad).all()
