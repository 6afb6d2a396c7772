"""A checkpoint never chooses what code runs: only the project's own builders are built from files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from layerscope.errors import UserError
from layerscope.inference import load_classifier
from layerscope.trust import data_builders, model_builders, trusted
from tests.conftest import CONF

INFO = {"name": "shapes", "classes": ["a", "b"], "in_channels": 1, "image_size": 8,
        "mean": [0.5], "std": [0.5]}
MLP = "layerscope.models.MLP"


def callables(marker: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Model configs that would each create ``marker`` if built; with the key the refusal names.

    ``copyfile`` copies ``marker``'s sibling ``source.txt``, which the caller writes.
    """
    touch = {"_target_": "pathlib.Path.touch", "_args_": [str(marker)]}
    opener = f"open({str(marker)!r}, 'w').close()"
    top = "model_config._target_"
    return {
        "copyfile": ({"_target_": "shutil.copyfile", "_args_": [str(marker.with_name("source.txt")),
                                                                 str(marker)]}, top),
        "touch": (touch, top),
        "makedirs": ({"_target_": "os.makedirs", "name": str(marker)}, top),
        "exec": ({"_target_": "builtins.exec", "_args_": [opener]}, top),
        "eval": ({"_target_": "builtins.eval", "_args_": [opener]}, top),
        "in-a-kwarg": ({"_target_": MLP, "hidden": touch}, "model_config.hidden._target_"),
        "in-a-list": ({"_target_": MLP, "hidden": [64, touch]}, "model_config.hidden[1]._target_"),
        "in-args": ({"_target_": MLP, "_args_": [touch]}, "model_config._args_[0]._target_"),
        "partial": ({"_target_": MLP, "hidden": {**touch, "_partial_": True}},
                    "model_config.hidden._target_"),
        "under-plain-keys": ({"_target_": MLP, "extra": {"deeper": {"x": [touch]}}},
                             "model_config.extra.deeper.x[0]._target_"),
        # oc.create would turn the string into a node with a _target_ of its own when Hydra resolves it.
        "interpolation": ({"_target_": MLP, "hidden": "${oc.create:{_target_: pathlib.Path.touch, "
                                                      f"_args_: [{marker}]}}}}"}, "model_config.hidden"),
    }


KINDS = list(callables(Path("marker")))


def crafted_checkpoint(path: Path, model_config: dict[str, Any]) -> Path:
    """A checkpoint of plain values only (it loads with weights_only=True) naming ``model_config``."""
    hparams = {"model_config": model_config, "data_info": INFO}
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, path)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_load_classifier_refuses_other_callables_and_runs_none(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    (tmp_path / "source.txt").write_text("copied")
    config, key = callables(marker)[kind]
    ckpt = crafted_checkpoint(tmp_path / "evil.ckpt", config)
    assert torch.load(ckpt, weights_only=True)  # passes the pickle check: only the allow-list stops it
    with pytest.raises(UserError) as refused:
        load_classifier(ckpt)
    message = str(refused.value)
    assert "\n" not in message and f"{key}=" in message and str(ckpt) in message
    assert not marker.exists()


def test_refusal_names_the_value(tmp_path: Path) -> None:
    config = {"_target_": "shutil.rmtree", "path": str(tmp_path)}
    with pytest.raises(UserError, match=r"model_config\._target_='shutil\.rmtree' is not one of"):
        trusted(config, model_builders(), "model_config", "x.ckpt")
    assert tmp_path.exists()


def test_a_data_builder_is_no_model_builder() -> None:
    config = {"_target_": "layerscope.data.datamodule.ImageDataModule"}
    with pytest.raises(UserError, match=r"model_config\._target_"):
        trusted(config, model_builders(), "model_config", "x")


def test_old_builder_names_load_as_the_new_ones(tiny_run: Path, tmp_path: Path) -> None:
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint["hyper_parameters"]["model_config"]["_target_"] == "layerscope.models.cifar_resnet"
    checkpoint["hyper_parameters"]["model_config"]["_target_"] = "layerscope.models.resnet"  # as saved before
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(load_classifier(old).predict(images).probs,
                       load_classifier(ckpt).predict(images).probs)
    old_name = {"_target_": "layerscope.models.plain", "depth": 8}
    renamed = trusted(old_name, model_builders(), "model_config", "")
    assert renamed == {"_target_": "layerscope.models.cifar_plain", "depth": 8}


def targets(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield value
            yield from targets(value)
    elif isinstance(node, list):
        for item in node:
            yield from targets(item)


@pytest.mark.parametrize(("group", "allowed"), [("model", model_builders()), ("data", data_builders())])
def test_every_shipped_option_is_allowed(group: str, allowed: frozenset[str],
                                         compose_train: Callable[..., DictConfig]) -> None:
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert len(options) >= 5
    for option in options:
        config = OmegaConf.to_container(compose_train(f"{group}={option}")[group], resolve=False)
        found = set(targets(config))
        assert found and found <= allowed, option
