"""Every option of every config group composes, and the objects it describes can be built."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from layerscope.apps.overrides import check_command_line
from layerscope.training.precision import resolve
from tests.conftest import CONF, TINY_SHAPES

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_expected_options_exist() -> None:
    expected = {
        "model": {"deep", "plain", "shallow", "mlp", "fast"},
        "data": {"shapes", "fashion_mnist", "mnist", "cifar10", "imagefolder"},
        "trainer": {"default", "cpu", "gpu", "ddp"},
        "optimizer": {"sgd", "adamw"},
        "scheduler": {"onecycle", "cosine", "none"},
        "debug": {"fast"},
    }
    for group, names in expected.items():
        assert names <= set(options(group)), group


def test_every_yaml_key_is_commented() -> None:
    for path in CONF.rglob("*.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                assert "#" in line, f"{path.relative_to(CONF)}:{number} has no comment: {stripped}"


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_option_composes_and_resolves(
    group: str, option: str, compose_train: Callable[..., DictConfig], tmp_path: Path
) -> None:
    extra = [f"data.root={tmp_path}"] if option == "imagefolder" else []
    if option == "imagefolder":
        for name in ("a", "b", "c"):
            (tmp_path / name).mkdir()
    cfg = compose_train(f"{group}={option}", *extra)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"]["num_classes"] == (3 if option == "imagefolder" else 10)
    # The command-line check that every entry point runs first accepts every shipped option.
    check_command_line(CONF, "train", [f"{group}={option}", *extra])


@pytest.mark.parametrize("model", options("model"))
def test_models_instantiate(model: str, compose_train: Callable[..., DictConfig]) -> None:
    cfg = compose_train(f"model={model}")
    assert len(instantiate(cfg.model).named_layers()) >= 3


def test_insight_full_probes_and_dissects_after_every_epoch(compose_train: Callable[..., DictConfig]) -> None:
    default, full = compose_train().insight, compose_train("insight=full").insight
    assert default.probes.every_n_epochs == default.dissection.every_n_epochs == 2  # kept within budget
    assert full.probes.every_n_epochs == full.dissection.every_n_epochs == 1  # "more often" means every epoch


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainers_instantiate_on_this_machine(
    trainer: str, compose_train: Callable[..., DictConfig]
) -> None:
    cfg = compose_train(f"trainer={trainer}")
    if trainer == "gpu":
        assert cfg.trainer.accelerator == "gpu"  # building it needs a GPU
        return
    # As train.py builds it: trainer.precision=auto is resolved first (Lightning has no "auto").
    precision = resolve(cfg.trainer.precision, cfg.trainer.accelerator).precision
    built = instantiate(cfg.trainer, precision=precision, logger=False, enable_checkpointing=False)
    assert built.max_epochs == cfg.trainer.max_epochs
    if trainer == "ddp":  # the collectives' timeout is set, not NCCL's 10-minute default
        assert built.strategy._timeout == datetime.timedelta(minutes=30)


@pytest.mark.parametrize("option", options("data"))
def test_data_modules_instantiate(
    option: str, compose_train: Callable[..., DictConfig], tmp_path: Path
) -> None:
    extra = [f"data.root={tmp_path}"] if option == "imagefolder" else []
    if option == "imagefolder":
        (tmp_path / "x").mkdir(), (tmp_path / "y").mkdir()
    dm = instantiate(compose_train(f"data={option}", *extra).data)
    assert dm.num_classes == (2 if option == "imagefolder" else 10)


def test_shapes_data_module_sets_up(compose_train: Callable[..., DictConfig]) -> None:
    dm = instantiate(compose_train(*TINY_SHAPES).data)
    dm.setup()
    assert dm.train.images.shape == (1000, 3, 32, 32)


@pytest.mark.parametrize("group", ["optimizer", "scheduler", "callbacks", "logger"])
def test_factories_and_callbacks_instantiate(
    group: str, compose_train: Callable[..., DictConfig]
) -> None:
    import torch

    for option in options(group):
        cfg = compose_train(f"{group}={option}")[group]
        if group == "optimizer":
            optimizer = instantiate(cfg)([torch.nn.Parameter(torch.zeros(2))])
            assert optimizer.param_groups[0]["lr"] == cfg.lr
        elif group == "scheduler":
            if not cfg:
                continue  # scheduler=none: a constant learning rate
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
            assert instantiate(cfg)(optimizer, total_steps=10) is not None
        else:
            built = [instantiate(c) for c in cfg.values() if c is not None]
            assert built


def test_experiment_and_debug_presets(compose_train: Callable[..., DictConfig]) -> None:
    cfg = compose_train("experiment=fashion_deep")
    assert cfg.data.name == "fashion_mnist" and cfg.model.depth == 20
    speed = compose_train("experiment=fashion_fast")
    assert speed.model._target_ == "layerscope.models.FastResNet" and speed.data.name == "fashion_mnist"
    assert set(speed.insight) == {"_target_"}  # insight=off: the callback with no views
    assert speed.module.test_time_flip and speed.module.test_time_shift == 1
    assert speed.module.label_smoothing == 0.1 and speed.data.val_size == 2000
    # The recipe turns the layer views off; the command line can turn them back on.
    assert compose_train("experiment=fashion_fast", "insight=default").insight.filters
    fast = compose_train("debug=fast")
    assert fast.trainer.max_epochs == 1 and fast.data.train_size == 512


def test_the_recipe_for_data_and_model_applies_to_that_pair_only(
    compose_train: Callable[..., DictConfig],
) -> None:
    default = compose_train()
    assert default.module.train_image_sizes == [16, 16, 16, 24, 32, 32]
    assert default.trainer.max_epochs == len(default.module.train_image_sizes)
    assert default.module.label_smoothing == 0.1 and default.module.test_time_flip
    for other in (compose_train("model=plain"), compose_train("data=fashion_mnist")):
        assert other.module.train_image_sizes is None and other.module.label_smoothing == 0.0
    # The command line and experiments still win over it.
    assert compose_train("trainer.max_epochs=2").trainer.max_epochs == 2
    assert compose_train("module.train_image_sizes=null").module.train_image_sizes is None
