"""The trainer on 2 real processes (gloo on CPU): gathered batch, gradients, lockstep skipping."""

import contextlib
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_data_layouts import write_folder, write_npz
from test_training_trainer import tiny_config

from pml_shrewd import SemanticDistanceLoss
from pml_shrewd.semantic_distances import MatrixDistance
from pml_shrewd.training import Trainer, gather_with_grad

WORLD = 2
SIZES = (7, 5)  # uneven per-process batches (as after skipped images)


def _rows(rank):
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


def _codes():
    g = torch.Generator().manual_seed(0)
    table = torch.rand(4, 4, generator=g).triu(1)
    table = table + table.T
    return (
        table,
        torch.rand(sum(SIZES), 8, generator=g, dtype=torch.float64),
        torch.randint(0, 4, (12,), generator=g),
    )


def _images():
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(sum(SIZES), 3, 16, 16, generator=g, dtype=torch.get_default_dtype()),
        torch.randint(0, 4, (sum(SIZES),), generator=g),
    )


def _step_config(data, out):
    # Frozen backbone (eval mode) and no BatchNorm in the head: per-process forward passes
    # equal the full-batch one, so gradients must match exactly; SGD keeps updates linear.
    return tiny_config(
        data, out, freeze_backbone=True, optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0
    )


@contextlib.contextmanager
def _exact_step():
    """Float64 model and one intra-op thread, for the one-step comparison (restored after).

    The losses are translation invariant, so the head's bias gradient is a sum of per-code
    terms that nearly cancel (about 1e-3 of the weight gradient). In float32 it is then decided
    by rounding: the backbone's output changes in the last bit with the batch split (7 + 5
    rows against 12) and with the number of threads (reduction order), which moved
    ``proj.bias`` gradients by about 1e-6 (2.5e-3 relative) between a reference run on all
    cores and the workers' single thread. Under ``make test`` an earlier in-process test had
    left torch at one thread, so the test passed there and failed alone. In float64 (the
    trainer computes the losses in float32 from the same rounded codes on every split) and
    on one thread the two runs agree to rounding of float64 sums, far inside the tolerances.
    """
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def _head_grads_and_weights(trainer):
    head = trainer.accelerator.unwrap_model(trainer.model).head
    return {n: p.grad.clone() for n, p in head.named_parameters()}, {
        n: v.clone() for n, v in head.state_dict().items()
    }


def _worker(rank, tmp):
    os.environ.update(
        ACCELERATE_USE_CPU="1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
    )  # fmt: skip
    # A deadlock (processes out of step) fails after a minute instead of hanging the suite.
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    torch.set_num_threads(1)
    out = {}

    # 1. gather_with_grad through accelerate: global batch back, gradients to the local rows only.
    with _exact_step():
        trainer = Trainer.from_config(_step_config(f"{tmp}/d.npz", f"{tmp}/step{rank}"))
    acc = trainer.accelerator
    assert acc.num_processes == WORLD and acc.process_index == rank
    table, z, y = _codes()
    local = z[_rows(rank)].clone().requires_grad_()
    all_z, all_y = gather_with_grad(acc, local), gather_with_grad(acc, y[_rows(rank)])
    (SemanticDistanceLoss(MatrixDistance(table))(all_z, all_y) * acc.num_processes).backward()
    out["gathered"], out["gathered_labels"], out["row_grad"] = all_z.detach(), all_y, local.grad

    # 2. one Trainer.train_step on this process's uneven share of a global batch (DDP averages).
    with _exact_step():
        images, labels = _images()
        torch.manual_seed(0)  # the same KL target sample as the single-process run
        out["loss"] = trainer.train_step(images[_rows(rank)], labels[_rows(rank)])
        out["grads"], out["weights"] = _head_grads_and_weights(trainer)

    # 3. fit() where rank 0's part of the first batch is unreadable and rank 1's part of the
    # second keeps one readable image: every process must skip both batches together.
    trainer = Trainer.from_config(
        tiny_config(f"{tmp}/folder", f"{tmp}/fit", batch_size=8, epochs=1, semantic="label")
    )
    out["final"] = trainer.fit()
    # Parameters (not BatchNorm statistics, which stay per process under DDP).
    out["fit_params"] = {
        n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()
    }
    torch.save(out, f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_two_processes_match_one_process_on_the_global_batch():
    with tempfile.TemporaryDirectory() as tmp:
        write_npz(f"{tmp}/d.npz")
        # The single-process reference on the global batch (same seeds, same initial weights),
        # in float64 on one thread as the workers (see _exact_step).
        with _exact_step():
            reference = Trainer.from_config(_step_config(f"{tmp}/d.npz", f"{tmp}/ref"))
            initial = {n: v.clone() for n, v in reference.model.head.state_dict().items()}
            images, labels = _images()
            torch.manual_seed(0)
            ref_loss = reference.train_step(images, labels)
            ref_grads, ref_weights = _head_grads_and_weights(reference)

        # Corrupt rank 0's half of global batch 1 and 3 of rank 1's 4 images of batch 2.
        write_folder(Path(tmp) / "folder")
        planner = Trainer.from_config(
            tiny_config(f"{tmp}/folder", f"{tmp}/plan", batch_size=8, epochs=1, semantic="label")
        )
        order = planner.epoch_indices(0)  # one process: the global order, 8 per batch
        corrupt = order[0:4] + order[12:15]
        for i in corrupt:
            with open(planner.train_set.sample_name(i), "wb") as f:
                f.write(b"not an image")

        mp.spawn(_worker, args=(tmp,), nprocs=WORLD, join=True)
        ranks = [torch.load(f"{tmp}/rank{r}.pt", weights_only=False) for r in range(WORLD)]

    table, z, y = _codes()
    full = z.clone().requires_grad_()
    SemanticDistanceLoss(MatrixDistance(table))(full, y).backward()
    for rank, out in enumerate(ranks):
        # The gathered batch is the concatenation of the processes' rows, in rank order.
        assert torch.equal(out["gathered"], z) and torch.equal(out["gathered_labels"], y)
        # Local rows' gradient, averaged over processes as DDP does, is the full-batch gradient.
        assert torch.allclose(out["row_grad"] / WORLD, full.grad[_rows(rank)], rtol=1e-9, atol=1e-12)
        assert out["row_grad"].abs().sum() > 0

        # Float64 on one thread (_exact_step): the split changes nothing but the order of float64
        # sums, so the step matches the single-process one to rounding (measured: 4e-16).
        assert out["loss"] == pytest.approx(ref_loss, rel=1e-9)
        for name, grad in ref_grads.items():
            assert grad.dtype == out["grads"][name].dtype == torch.float64, name
            assert torch.allclose(out["grads"][name], grad, rtol=1e-9, atol=1e-12), name
        for name, weight in ref_weights.items():
            assert torch.allclose(out["weights"][name], weight, rtol=1e-9, atol=1e-12), name
    assert any(not torch.equal(ref_weights[n], v) for n, v in initial.items())  # the step did update

    # Both processes skipped the same two batches, trained the other two and stayed in sync.
    for out in ranks:
        final = out["final"]
        assert final["steps"] == 4 and final["skipped_batches"] == 2
        assert final["skipped_batch_images"] == 4 + (4 + 1)  # readable images of the skipped batches
        assert final["skipped_images"] == len(corrupt)  # gathered from both processes
    assert all(torch.equal(v, ranks[1]["fit_params"][k]) for k, v in ranks[0]["fit_params"].items())
    assert "mAP" in ranks[0]["final"]
