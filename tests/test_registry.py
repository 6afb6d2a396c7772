"""The registry and the configs agree both ways, and every list of options a user reads matches it."""

from __future__ import annotations

import re

import pytest
import yaml
from hydra.utils import get_object

import layerscope.data.sources  # registers every data source
import layerscope.models  # noqa: F401 - registers every model
from layerscope.data.datamodule import ImageDataModule
from layerscope.registry import DATA, MODELS, Registry
from tests.conftest import CONF, REPO
from tests.manual_text import group_table_rows

REGISTRIES = {"model": MODELS, "data": DATA}


def shipped(group: str) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((CONF / group).glob("*.yaml"))}


def built_by(group: str, config: dict) -> str:
    """The target an option builds: a model's own, or the data source the data module wraps."""
    return config["_target_"] if group == "model" else config["source"]["_target_"]


@pytest.mark.parametrize("group", REGISTRIES)
def test_every_shipped_option_has_its_registered_builder_and_the_reverse(group: str) -> None:
    registry, configs = REGISTRIES[group], shipped(group)
    for option, config in configs.items():
        entry = registry.for_option(option)
        assert entry is not None, f"conf/{group}/{option}.yaml has no registered builder"
        assert built_by(group, config) == entry.target, option
    assert sorted(registry.options) == sorted(configs), "a registered option has no conf file"


def test_every_data_option_builds_the_one_registered_data_module() -> None:
    module = DATA.entry("layerscope.data.datamodule.ImageDataModule")
    assert module is not None and module.builder is ImageDataModule and module.options == ()
    assert {config["_target_"] for config in shipped("data").values()} == {module.target}


@pytest.mark.parametrize("registry", REGISTRIES.values(), ids=REGISTRIES)
def test_each_target_names_its_builder_where_hydra_finds_it(registry: Registry) -> None:
    for target in registry.targets:
        entry = registry.entry(target)
        assert entry is not None and get_object(target) is entry.builder, target


def test_renamed_builders_point_at_registered_ones() -> None:
    assert MODELS.renamed == {"layerscope.models.resnet": "layerscope.models.cifar_resnet",
                              "layerscope.models.plain": "layerscope.models.cifar_plain"}
    assert set(MODELS.renamed.values()) <= MODELS.targets


def test_a_builder_or_option_registered_twice_is_refused() -> None:
    registry = Registry("thing")

    @registry.register("one")
    def first() -> None: ...

    def second() -> None: ...

    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register("one")(second)
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register("two")(first)
    assert registry.options == ["one"]


@pytest.mark.parametrize("group", REGISTRIES)
def test_the_option_lists_users_read_name_every_registered_option(group: str) -> None:
    options = set(REGISTRIES[group].options)
    train_yaml = (CONF / "train.yaml").read_text()
    comment = re.search(rf"^  - {group}: \w+ +# [^:]+: (.+)$", train_yaml, re.MULTILINE)
    assert comment is not None and set(comment.group(1).split(" | ")) == options
    group_table = (REPO / "docs" / "training.md").read_text()  # the manual's table of config groups
    rows = {name: set(listed) for _, name, listed in group_table_rows(group_table)}
    assert rows.get(group) == options
    if group == "model":  # the quoted error of a misspelt option lists them as the command does
        readme = (REPO / "README.md").read_text()
        assert f"is not an option: choose one of {', '.join(sorted(options))}\n" in readme
