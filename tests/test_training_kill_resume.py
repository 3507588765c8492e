"""A training process SIGKILLed after a checkpoint and resumed with ``--resume`` ends with the same
weights as an uninterrupted run (issue 4), also when the kill left a half-written checkpoint behind.

Each run is a real ``python -m pml_shrewd.cli train`` subprocess on one CPU thread. The run has
many small steps (60 steps of batch 8, a checkpoint after each) and the kill lands as soon as
``checkpoints/last`` points at step 2 or later, so the process dies mid-run, not at its end.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_data_layouts import write_npz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, BATCH, N_TRAIN = 10, 8, 48
TOTAL_STEPS = EPOCHS * (N_TRAIN // BATCH)
FLAGS = [
    "--dataset", "npz", "--backbone", "test_resnet", "--bits", "16", "--small-images", "--image-size", "16",
    "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--checkpoint-every-steps", "1",
    "--checkpoint-every", "1", "--keep-checkpoints", "2", "--eval-every", "3", "--hp-k", "10",
    "--mixed-precision", "no", "--num-workers", "0", "--no-download", "--no-pretrained", "--seed", "3",
]  # fmt: skip
START_TIMEOUT_S = 120  # imports and the first steps; generous for a loaded machine


def train_command(data, out, *extra):
    return [sys.executable, "-m", "pml_shrewd.cli", "train", "--data", str(data), "--output-dir", str(out),
            *FLAGS, *extra]  # fmt: skip


def env():
    pythonpath = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": pythonpath}  # fmt: skip


def run_to_completion(data, out, *extra):
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.log", "a") as log:
        proc = subprocess.run(
            train_command(data, out, *extra), env=env(), stdout=log, stderr=subprocess.STDOUT, timeout=300
        )
    assert proc.returncode == 0, (out.parent / f"{out.name}.log").read_text()[-3000:]


def checkpoint_step(out):
    """The step that ``checkpoints/last`` points at, or None (no link yet)."""
    try:
        target = os.readlink(out / "checkpoints" / "last")
    except OSError:
        return None
    return int(target.removeprefix("step-"))


def start_and_kill(data, out, min_step=2):
    """Start training, SIGKILL it once ``checkpoints/last`` is at ``min_step`` or later; return that step."""
    out.mkdir(parents=True)
    log_path = out.parent / f"{out.name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(train_command(data, out), env=env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while (checkpoint_step(out) or 0) < min_step:
                assert proc.poll() is None, (
                    f"training exited early ({proc.returncode}):\n{log_path.read_text()}"
                )
                assert time.monotonic() < deadline, f"no checkpoint at step {min_step} in {START_TIMEOUT_S}s"
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            returncode = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert returncode == -signal.SIGKILL, (
        f"not killed by SIGKILL (exit {returncode}):\n{log_path.read_text()}"
    )
    step = checkpoint_step(out)
    # The kill landed mid-run: the run had not finished (no final model or metrics).
    assert min_step <= step < TOTAL_STEPS
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()
    return step


def load_weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The data and the final weights of one uninterrupted run."""
    root = tmp_path_factory.mktemp("kill_resume")
    data = write_npz(root / "d.npz", n_train=N_TRAIN, n_test=16, seed=1)
    run_to_completion(data, root / "full")
    return data, load_weights(root / "full" / "model.pt")


def resume_and_compare(data, out, reference_weights, killed_step):
    killed_weights = load_weights(out / "checkpoints" / f"step-{killed_step:08d}" / "model.pt")
    run_to_completion(data, out, "--resume")
    assert checkpoint_step(out) == TOTAL_STEPS
    assert_same_weights(load_weights(out / "model.pt"), reference_weights)
    # Sanity: the resumed run trained on from the kill (its final weights are not the checkpoint's).
    assert not all(torch.equal(killed_weights[n], reference_weights[n]) for n in reference_weights)
    assert not any(name.endswith(".tmp") for name in os.listdir(out / "checkpoints"))


def test_sigkill_after_checkpoint_then_resume_gives_identical_weights(reference, tmp_path):
    data, reference_weights = reference
    out = tmp_path / "killed"
    killed_step = start_and_kill(data, out)
    resume_and_compare(data, out, reference_weights, killed_step)


def test_resume_ignores_a_half_written_checkpoint(reference, tmp_path):
    """A kill during ``save_checkpoint`` leaves ``step-N.tmp`` (written before its atomic rename) and
    possibly ``last.tmp``; ``--resume`` must restart from ``last`` and still end identical."""
    data, reference_weights = reference
    out = tmp_path / "killed"
    killed_step = start_and_kill(data, out)
    ckpt = out / "checkpoints"
    complete = ckpt / f"step-{killed_step:08d}"
    partial = ckpt / f"step-{killed_step + 1:08d}.tmp"
    shutil.rmtree(partial, ignore_errors=True)  # the kill may have left a real one: make it ours
    shutil.copytree(complete, partial)
    (partial / "trainer_state.json").unlink()  # written last, just before the rename
    for name in ("model.safetensors", "optimizer.bin"):  # truncated mid-write
        if (partial / name).exists():
            blob = (partial / name).read_bytes()
            (partial / name).write_bytes(blob[: len(blob) // 3])
    if os.path.lexists(ckpt / "last.tmp"):
        os.remove(ckpt / "last.tmp")
    os.symlink(partial.name, ckpt / "last.tmp")
    assert checkpoint_step(out) == killed_step  # `last` still names the complete checkpoint
    resume_and_compare(data, out, reference_weights, killed_step)
