"""SemanticDistanceLoss under PML's DistributedLossWrapper in a real 2-process gloo group."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper

from pml_shrewd import EmpiricalKLRegularizer, SemanticDistanceLoss
from pml_shrewd.semantic_distances import MatrixDistance

WORLD = 2


def _data():
    g = torch.Generator().manual_seed(0)
    table = torch.rand(5, 5, generator=g, dtype=torch.float64)
    table = (table + table.T) / 2
    table = table.fill_diagonal_(0).float().double()  # MatrixDistance stores float32
    z = torch.rand(12, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (12,), generator=g)
    return table, z, y


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    table, z, y = _data()
    local = z.chunk(WORLD)[rank].clone().requires_grad_()
    local_y = y.chunk(WORLD)[rank]
    results = {}
    for efficient in (False, True):
        local.grad = None
        loss_fn = DistributedLossWrapper(SemanticDistanceLoss(MatrixDistance(table)), efficient=efficient)
        loss = loss_fn(local, local_y)
        loss.backward()
        results[efficient] = (loss.detach(), local.grad.clone())
    # With a regulariser too: KL is computed on the gathered batch.
    torch.manual_seed(1)
    reg_loss = DistributedLossWrapper(
        SemanticDistanceLoss(MatrixDistance(table), embedding_regularizer=EmpiricalKLRegularizer())
    )(local.detach().clone().requires_grad_(), local_y)
    results["reg"] = reg_loss.detach()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_distributed_loss_wrapper_matches_full_batch():
    table, z, y = _data()
    full = z.clone().requires_grad_()
    loss = SemanticDistanceLoss(MatrixDistance(table))(full, y)
    loss.backward()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
    grads = full.grad.chunk(WORLD)
    for rank, res in enumerate(ranks):
        value, grad = res[False]
        # PML scales by world size; DDP's gradient averaging then gives the full-batch gradient.
        assert value.item() == pytest.approx(WORLD * loss.item(), rel=1e-10)
        assert torch.allclose(grad, WORLD * grads[rank], rtol=1e-8, atol=1e-12)
        value_eff, grad_eff = res[True]
        assert torch.isfinite(value_eff) and torch.isfinite(grad_eff).all()
        assert torch.isfinite(res["reg"])
    # Efficient mode: each rank's anchors against the whole gathered batch, self-pairs removed.
    n_local = len(z) // WORLD
    for rank, res in enumerate(ranks):
        pairs = [(i, j) for i in range(rank * n_local, (rank + 1) * n_local) for j in range(len(z)) if i != j]
        dz = torch.stack([(z[i] - z[j]).abs().sum() for i, j in pairs])
        dy = torch.stack([table[y[i], y[j]] for i, j in pairs])
        w = (0.1 / (0.1 + dy)) ** 2
        expected = (w * (dz / dz.mean() - dy / dy.mean()) ** 2).mean()
        assert res[True][0].item() == pytest.approx(WORLD * expected.item(), rel=1e-10)
