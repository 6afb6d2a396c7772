"""The LightningModule: backprop really learns, optimizer wiring, checkpointable hyper-parameters."""

from __future__ import annotations

import functools

import pytest
import torch

from layerscope.data.augment import shift
from layerscope.errors import UserError
from layerscope.training.module import ImageClassifier
from layerscope.training.schedules import cosine, one_cycle

DATA_INFO = {
    "name": "test", "classes": [str(i) for i in range(4)], "part_names": [],
    "in_channels": 3, "image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3,
}
MODELS = {
    "deep": {"_target_": "layerscope.models.cifar_resnet", "depth": 8},
    "plain": {"_target_": "layerscope.models.cifar_plain", "depth": 8},
    "shallow": {"_target_": "layerscope.models.ShallowCNN", "channels": [8, 16]},
    "mlp": {"_target_": "layerscope.models.MLP", "hidden": [32]},
}


def classifier(name: str, **kwargs: object) -> ImageClassifier:
    config = {**MODELS[name], "in_channels": 3, "num_classes": 4, "image_size": 16}
    return ImageClassifier(config, DATA_INFO, **kwargs)


@pytest.mark.parametrize("name", MODELS)
def test_overfits_a_tiny_batch(name: str) -> None:
    # Backprop + gradient descent must drive the loss on 16 fixed images to almost zero.
    torch.manual_seed(0)
    module = classifier(name, channels_last=False)
    images, labels = torch.randn(16, 3, 16, 16), torch.arange(16) % 4
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(module(images), labels)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 1.0 and loss.item() < 0.05


def test_every_parameter_gets_a_gradient() -> None:
    module = classifier("deep")
    loss = module(torch.randn(4, 3, 16, 16)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_channels_last_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    a = classifier("deep", channels_last=False).eval()
    b = classifier("deep", channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    b.setup("fit")
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(a(x), b(x), atol=1e-5)


def _training_step_and_gradients(module: ImageClassifier) -> tuple[torch.Tensor, list[torch.Tensor]]:
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no trainer here
    module.optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)  # type: ignore[method-assign]
    torch.manual_seed(1)
    batch = (torch.randn(8, 3, 16, 16), torch.arange(8) % 4)
    loss = module.training_step(batch, 0)
    loss.backward()
    return loss.detach(), [p.grad for p in module.parameters()]


def test_compiled_training_step_agrees_with_eager() -> None:
    torch.manual_seed(0)
    eager = classifier("deep")
    compiled = classifier("deep", compile=True)
    compiled.load_state_dict(eager.state_dict())
    for module in (eager, compiled):
        module.setup("fit")
    assert compiled._compiled_forward is not None and eager._compiled_forward is None
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # no second copy in checkpoints
    eager_loss, eager_grads = _training_step_and_gradients(eager)
    compiled_loss, compiled_grads = _training_step_and_gradients(compiled)
    assert torch.allclose(eager_loss, compiled_loss, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(eager_grads, compiled_grads, strict=True))


def test_progressive_resizing_trains_small_first_and_evaluates_at_full_size() -> None:
    module = classifier("deep", train_image_sizes=[8, 12, 16])
    assert [module.train_image_size(epoch) for epoch in range(5)] == [8, 12, 16, 16, 16]
    assert classifier("deep").train_image_size(3) is None
    seen: list[tuple[int, int]] = []
    module.model.stem.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    _training_step_and_gradients(module)  # no trainer: epoch 0
    module.eval()
    module(torch.randn(2, 3, 16, 16))
    assert seen == [(8, 8), (16, 16)]
    with pytest.raises(UserError, match="train_image_sizes"):
        classifier("deep", train_image_sizes=[4, 16])


def test_test_time_flip_averages_the_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    plain = classifier("deep").eval()
    flipping = classifier("deep", test_time_flip=True).eval()
    flipping.load_state_dict(plain.state_dict())
    for module in (plain, flipping):
        module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no trainer here
    images, labels = torch.randn(4, 3, 16, 16), torch.arange(4)
    expected = (plain(images) + plain(images.flip(-1))) / 2
    with torch.no_grad():
        assert torch.allclose(flipping.test_step((images, labels), 0), expected, atol=1e-6)
        assert torch.allclose(flipping.validation_step((images, labels), 0), plain(images), atol=1e-6)


def test_test_time_shift_adds_each_view_moved_both_ways_at_half_weight() -> None:
    torch.manual_seed(0)
    plain = classifier("deep").eval()
    shifting = classifier("deep", test_time_flip=True, test_time_shift=2).eval()
    shifting.load_state_dict(plain.state_dict())
    shifting.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no trainer here
    images, labels = torch.randn(4, 3, 16, 16), torch.arange(4)
    black = torch.full((3,), -0.5 / 0.25)  # DATA_INFO's normalised black
    views = [images, images.flip(-1)]
    moved = [shift(v, d, d, black) for v in views for d in (2, -2)]
    with torch.no_grad():
        expected = (sum(plain(v) for v in views) / 2 + sum(plain(v) for v in moved) / 4) / 2
        assert torch.allclose(shifting.test_step((images, labels), 0), expected, atol=1e-5)
        assert moved[0][0, :, :2].eq(black.view(3, 1, 1)).all()  # the border really is black
    with pytest.raises(UserError, match="test_time_shift"):
        classifier("deep", test_time_shift=-1)


def test_hyperparameters_are_plain_and_rebuild_the_model() -> None:
    module = classifier("shallow", optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    assert set(module.hparams) == {"model_config", "data_info", "label_smoothing", "channels_last", "compile",
                                   "test_time_flip", "test_time_shift", "train_image_sizes"}
    rebuilt = ImageClassifier(module.hparams["model_config"], module.hparams["data_info"])
    rebuilt.load_state_dict(module.state_dict())


class FakeTrainer:
    estimated_stepping_batches = 100


@pytest.mark.parametrize("schedule", [one_cycle, cosine])
def test_optimizer_groups_and_schedules(schedule: object, monkeypatch: pytest.MonkeyPatch) -> None:
    module = classifier(
        "deep",
        optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4),
        scheduler=schedule,
    )
    monkeypatch.setattr(ImageClassifier, "trainer", FakeTrainer())
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    decayed, exempt = optimizer.param_groups
    assert all(p.ndim > 1 for p in decayed["params"]) and exempt["weight_decay"] == 0.0
    assert decayed["weight_decay"] == 5e-4
    scheduler = config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert max(lrs) <= 0.1 + 1e-9 and lrs[-1] < 0.01


def test_one_cycle_survives_runs_of_a_few_steps() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = one_cycle(optimizer, total_steps=3)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert 0 < optimizer.param_groups[0]["lr"] <= 0.1


@pytest.mark.parametrize("stage", ["val", "test"])
def test_evaluation_losses_are_averaged_over_every_process(stage: str) -> None:
    """Under DDP each process sees its own share; the logged loss must be their mean, not rank 0's."""
    from unittest.mock import patch

    module = classifier("deep")
    images, labels = torch.randn(4, 3, 16, 16), torch.arange(4) % 4
    with patch.object(ImageClassifier, "log") as log, patch.object(ImageClassifier, "_test_time_logits",
                                                                   lambda self, x: self(x)):
        module._evaluate((images, labels), stage)
    loss_calls = [c for c in log.call_args_list if c.args[0] == f"{stage}/loss"]
    assert len(loss_calls) == 1 and loss_calls[0].kwargs["sync_dist"] is True


def test_the_learning_rate_is_logged_from_the_host_without_a_copy_to_the_device() -> None:
    from unittest.mock import patch

    module = classifier("deep")
    module.optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)  # type: ignore[method-assign]
    with patch.object(ImageClassifier, "log") as log:
        module.training_step((torch.randn(4, 3, 16, 16), torch.arange(4) % 4), 0)
    (lr,) = [c.args[1] for c in log.call_args_list if c.args[0] == "train/lr"]
    # A CPU tensor stays on the CPU in Lightning's results, where a float would become a GPU tensor.
    assert isinstance(lr, torch.Tensor) and lr.device.type == "cpu" and lr.item() == pytest.approx(0.1)


@pytest.mark.parametrize(("local_loss", "any_bad", "stops"), [
    (float("nan"), True, "the loss became nan"),
    (0.5, True, "the loss became NaN or infinite on another process"),
    (0.5, False, None),
])
def test_every_process_stops_at_the_step_where_any_loss_went_bad(
    local_loss: float, any_bad: bool, stops: str | None
) -> None:
    """Under DDP the processes agree (any of them) before one stops: none is left in a collective."""
    from types import SimpleNamespace
    from unittest.mock import MagicMock

    from layerscope.errors import UserError
    from layerscope.training.callbacks import StopOnNonFiniteLoss

    strategy = MagicMock()
    strategy.reduce_boolean_decision.return_value = any_bad
    trainer = SimpleNamespace(world_size=2, strategy=strategy, optimizers=[], global_step=7, current_epoch=1,
                              checkpoint_callbacks=[], callbacks=[])
    check = StopOnNonFiniteLoss()
    if stops is None:
        check.on_train_batch_end(trainer, None, {"loss": torch.tensor(local_loss)}, None, 0)
    else:
        with pytest.raises(UserError, match=stops):
            check.on_train_batch_end(trainer, None, {"loss": torch.tensor(local_loss)}, None, 0)
    strategy.reduce_boolean_decision.assert_called_once_with(local_loss != local_loss, all=False)
