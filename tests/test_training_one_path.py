"""One training path: the Trainer on cached features is the plain training loop the benchmark
figures were made with (same seed, batches, optimiser and schedule: bit-identical codes)."""

import numpy as np
import pytest
import torch

from pml_shrewd.data import FeatureSamples, ShuffledEpochs
from pml_shrewd.losses import build_objective
from pml_shrewd.models import HashHead
from pml_shrewd.semantic_distances import MatrixDistance
from pml_shrewd.training import TrainConfig, Trainer


def _provider(num_classes):
    rng = np.random.default_rng(3)
    d = rng.uniform(0.2, 1.0, (num_classes, num_classes))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return MatrixDistance(torch.tensor(d, dtype=torch.float32))


def reference_loop(x, y, variant, provider, *, bits, steps, batch, lr, drop_rate, seed=0):
    """The CPU benchmark's own loop before the Trainer took it over (recipes/benchmark_cifar.py
    at 157adfd: ``train_head`` + ``batch_indices``), transcribed."""
    x = x.numpy()
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = torch.from_numpy((x - mean) / std)
    torch.manual_seed(seed)
    head = HashHead(xs.shape[1], bits, hidden_dim=16, batch_norm=True, drop_rate=drop_rate)
    loss_fn = build_objective(variant, provider, embedding_size=bits, num_classes=int(y.max()) + 1)
    optimizer = torch.optim.AdamW([*head.parameters(), *loss_fn.parameters()], lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)

    def batches():
        n = len(y)
        while True:
            perm = torch.randperm(n, generator=generator)
            yield from perm[: n - n % batch].split(batch)

    order = batches()
    head.train()
    for _ in range(steps):
        idx = next(order)
        loss = loss_fn(head(xs[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    head.eval()
    with torch.no_grad():
        return head(xs)


@pytest.mark.parametrize(
    "variant, drop_rate", [("shrewd", 0.0), ("shred", 0.0), ("triplet", 0.3), ("cls", 0.0)]
)
def test_trainer_on_cached_features_is_the_benchmark_loop(tmp_path, variant, drop_rate):
    torch.manual_seed(1)
    n, dim, classes, bits, batch = 100, 12, 5, 8, 16
    steps = 2 * (n // batch) + 3  # over two epochs: the shuffle continues across epochs
    x, y = torch.randn(n, dim) * 3 + 1, torch.arange(n) % classes
    provider = _provider(classes)
    expected = reference_loop(
        x, y, variant, provider, bits=bits, steps=steps, batch=batch, lr=3e-3, drop_rate=drop_rate
    )

    config = TrainConfig(
        variant=variant, num_bits=bits, steps=steps, batch_size=batch, lr=3e-3, weight_decay=1e-4,
        optimizer="adamw", scheduler="cosine", warmup_steps=0, eval_every=0, checkpoint_every=0,
        mixed_precision="no", output_dir=str(tmp_path / "run"), print_epochs=False,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    head = HashHead(dim, bits, hidden_dim=16, batch_norm=True, drop_rate=drop_rate, standardize=True)
    head.set_feature_statistics(x)
    loss_fn = build_objective(variant, provider, embedding_size=bits, num_classes=classes)
    train = FeatureSamples(x, y.tolist(), [f"c{i}" for i in range(classes)])
    trainer = Trainer(head, loss_fn, train, train, config=config, sampler=ShuffledEpochs(n, seed=config.seed))
    trainer.fit()
    assert trainer.step == steps and trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    head.eval()
    with torch.no_grad():
        got = head(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_shuffled_epochs_replay_the_generator_in_any_order():
    order = ShuffledEpochs(50, seed=4)
    generator = torch.Generator().manual_seed(4)
    expected = [torch.randperm(50, generator=generator).numpy() for _ in range(4)]
    for epoch in (2, 0, 3, 1, 3):  # a resumed run asks for a later epoch first
        np.testing.assert_array_equal(order(epoch), expected[epoch])
    with pytest.raises(ValueError, match="epoch"):
        order(-1)


@pytest.mark.parametrize("variant", ["shrewd", "shred", "triplet"])
def test_memory_size_wraps_the_loss_in_a_cross_batch_memory(variant):
    from pml_shrewd.losses import CrossBatchMemory

    loss_fn = build_objective(variant, _provider(10), embedding_size=8, num_classes=10, memory_size=48)
    assert isinstance(loss_fn, CrossBatchMemory) and loss_fn.memory_size == 48
    assert (loss_fn.miner is not None) == (variant == "triplet")  # a baseline's miner moves into the memory
    torch.manual_seed(0)
    for _ in range(3):  # the memory fills past one batch: pairs reach earlier codes
        z = torch.rand(16, 8, requires_grad=True)
        loss = loss_fn(z, torch.randint(0, 10, (16,)))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss_fn.queue_idx == 0 and loss_fn.has_been_filled  # 3 batches of 16 filled 48


@pytest.mark.parametrize("variant", ["shrewd", "triplet"])
def test_kl_warmup_ramps_the_weight_inside_a_memory_and_skips_losses_without_kl(tmp_path, variant):
    from pml_shrewd.losses.variants import inner_loss
    from pml_shrewd.training import KLWarmup

    x, y = torch.randn(64, 12), torch.arange(64) % 10
    loss_fn = build_objective(variant, _provider(10), embedding_size=8, num_classes=10, memory_size=32)
    seen = []

    class Spy:
        def on_step_start(self, trainer):
            seen.append(getattr(inner_loss(trainer.loss_fn), "embedding_reg_weight", None))

    config = TrainConfig(variant=variant, steps=6, batch_size=16, eval_every=0, checkpoint_every=0,
                         mixed_precision="no", output_dir=str(tmp_path), print_epochs=False)  # fmt: skip
    train = FeatureSamples(x, y.tolist(), [str(i) for i in range(10)])
    head = HashHead(12, 8, hidden_dim=16)
    Trainer(head, loss_fn, train, config=config, callbacks=[KLWarmup(0.01, 4), Spy()]).fit()
    if variant == "shrewd":
        assert seen == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01, 0.01])
    else:  # PML's losses have no KL term: the warm-up leaves them alone
        assert set(seen) == {1}
    assert torch.isfinite(head(x)).all()


def test_code_sharpening_raises_the_heads_slope_each_step_and_saves_it(tmp_path):
    from pml_shrewd.training import CodeSharpening

    x, y = torch.randn(64, 12), torch.arange(64) % 10
    seen = []

    class Spy:
        def on_step_start(self, trainer):
            seen.append(float(trainer.model.sharpness))

    config = TrainConfig(variant="shrewd", steps=6, batch_size=16, eval_every=0, checkpoint_every=0,
                         mixed_precision="no", output_dir=str(tmp_path), print_epochs=False)  # fmt: skip
    head = HashHead(12, 8, hidden_dim=16, batch_norm=True)
    loss_fn = build_objective("shrewd", _provider(10), embedding_size=8, num_classes=10)
    train = FeatureSamples(x, y.tolist(), [str(i) for i in range(10)])
    bias = head.norm.bias.detach().clone()
    Trainer(head, loss_fn, train, config=config, callbacks=[CodeSharpening(5.0, 4), Spy()]).fit()
    assert seen == pytest.approx([2.0, 3.0, 4.0, 5.0, 5.0, 5.0])  # 1 + 4 * min(1, (step + 1) / 4)
    assert float(head.sharpness) == 5.0 and torch.isfinite(head(x)).all()
    # The BatchNorm scale before the sigmoid stayed fixed (it would shrink to undo the slope);
    # its shift trained.
    assert not head.norm.weight.requires_grad and torch.equal(head.norm.weight, torch.ones(8))
    assert not torch.equal(head.norm.bias, bias)
    free = HashHead(12, 8, hidden_dim=16, batch_norm=True)
    CodeSharpening(5.0, 4, fix_norm_scale=False).on_model(free)
    assert free.norm.weight.requires_grad
    with pytest.raises(ValueError, match="no HashHead"):
        CodeSharpening(5.0, 4).on_model(torch.nn.Linear(3, 3))
    restored = HashHead(12, 8, hidden_dim=16, batch_norm=True)
    restored.load_state_dict(head.state_dict())  # the slope travels with the weights
    assert float(restored.sharpness) == 5.0
    with pytest.raises(ValueError, match="final"):
        CodeSharpening(0.5, 4)
    with pytest.raises(ValueError, match="steps"):
        CodeSharpening(2.0, 0)


def test_sharpness_keeps_binary_codes_and_old_weights_load_with_slope_one():
    torch.manual_seed(1)
    head = HashHead(12, 16, hidden_dim=16).eval()
    x = torch.randn(40, 12)
    with torch.no_grad():
        soft = head(x)
        head.sharpness.fill_(7.0)
        sharp = head(x)
    torch.testing.assert_close(sharp > 0.5, soft > 0.5)  # the 0.5 threshold does not move
    assert (sharp - 0.5).abs().mean() > (soft - 0.5).abs().mean()  # nearer {0, 1}
    old = {k: v for k, v in head.state_dict().items() if k != "sharpness"}  # saved before the buffer
    restored = HashHead(12, 16, hidden_dim=16).eval()
    restored.load_state_dict(old)  # strict: the missing buffer is filled, not an error
    assert float(restored.sharpness) == 1.0
    torch.testing.assert_close(restored(x), soft)


def test_code_sharpness_config_is_checked_and_builds_its_callback():
    from pml_shrewd.training import CodeSharpening
    from pml_shrewd.training.builders import build_callbacks

    with pytest.raises(ValueError, match="code_sharpness"):
        TrainConfig(code_sharpness=0.5)
    assert build_callbacks(TrainConfig(), 100) == []
    (callback,) = build_callbacks(TrainConfig(code_sharpness=8.0), 100)
    assert isinstance(callback, CodeSharpening) and callback.sharpness_at(99) == 8.0
