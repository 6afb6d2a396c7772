"""The command-line check: group options across Hydra's search path, sweep syntax, key names, value types."""

from __future__ import annotations

import os
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from layerscope.apps.cli import register_resolvers
from layerscope.apps.overrides import check_command_line
from layerscope.apps.schema import DECLARED_TYPES
from layerscope.errors import UserError
from tests.conftest import CONF, REPO, TINY_SHAPES

MODELS = "deep, fast, mlp, plain, shallow, timm, torchvision"


def check(*argv: str, config_name: str = "train") -> None:
    register_resolvers()
    check_command_line(CONF, config_name, list(argv))


def refusal(*argv: str) -> str:
    with pytest.raises(UserError) as caught:
        check(*argv)
    return str(caught.value)


@pytest.fixture
def user_configs(tmp_path: Path) -> Path:
    """A user's own config folder adding a model option, ``model=tiny``."""
    folder = tmp_path / "my_configs"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "tiny.yaml").write_text(
        "_target_: layerscope.models.MLP  # a small fully connected network\n"
        "hidden: [8]                       # one hidden layer of 8 neurons\n"
        "num_classes: ${data.num_classes}  # from the data\n"
        "in_channels: ${data.in_channels}  # from the data\n"
        "image_size: ${data.image_size}    # from the data\n"
    )
    return folder


def test_a_misspelt_option_lists_the_options() -> None:
    assert refusal("model=depp") == f"model=depp is not an option: choose one of {MODELS}"
    assert refusal("-m", "model=choice(deep,mlpp)") == f"model=mlpp is not an option: choose one of {MODELS}"
    assert refusal("-m", "model=deep,mlpp") == f"model=mlpp is not an option: choose one of {MODELS}"
    assert refusal("-m", "model=glob(x*)").startswith("model=glob(x*) matches no option")


@pytest.mark.parametrize("sweep", ["model=glob(*)", "model=choice(deep,mlp)", "model=deep,mlp",
                                   "model=glob(*,exclude=fast)", "seed=range(1,3)", "seed=1,2"])
def test_sweep_syntax_is_accepted(sweep: str) -> None:
    check("-m", sweep, "data.batch_size=64")


def test_options_from_a_users_config_dir_are_accepted(user_configs: Path) -> None:
    check("--config-dir", str(user_configs), "model=tiny", "model.hidden=[4]")
    check(f"hydra.searchpath=[file://{user_configs}]", "model=tiny")
    check("-m", "--config-dir", str(user_configs), "model=tiny,deep")
    # The user's options join the shipped ones in the message for a misspelt one.
    assert refusal("--config-dir", str(user_configs), "model=tinyy").endswith(
        "deep, fast, mlp, plain, shallow, timm, tiny, torchvision")
    # The user's option declares its keys' types as the shipped ones do.
    assert refusal("--config-dir", str(user_configs), "model=tiny", "model.hidden=[x]") == (
        "model.hidden[0]=x is not an integer (e.g. model.hidden[0]=8)")
    assert "model=tiny is not an option" in refusal("model=tiny")  # not without the folder
    assert refusal("--config-dir", "/nonexistent/configs", "model=tiny").startswith(
        "--config-dir /nonexistent/configs is not a folder")


@pytest.mark.parametrize(("argv", "key", "closest"), [
    (["data.batch_sizee=1"], "data.batch_sizee", "data.batch_size"),
    (["trainer.max_epoch=3"], "trainer.max_epoch", "trainer.max_epochs"),
    (["-m", "trainer.max_epoch=3,4"], "trainer.max_epoch", "trainer.max_epochs"),
    (["~tset"], "tset", "test"),
])
def test_a_misspelt_key_names_the_closest_keys(argv: list[str], key: str, closest: str) -> None:
    message = refusal(*argv)
    assert message.startswith(f"{key} is not a key of this config: did you mean {closest}")
    assert "\n" not in message


@pytest.mark.parametrize(("argv", "expected"), [
    (["trainer.max_epochs=abc"], "trainer.max_epochs=abc is not an integer (e.g. trainer.max_epochs=6)"),
    (["seed=notanumber"], "seed=notanumber is not an integer (e.g. seed=42)"),
    (["-m", "seed=1,abc"], "seed=abc is not an integer (e.g. seed=42)"),
    (["module.channels_last=maybe"], "module.channels_last=maybe is not true or false"),
    (["optimizer.lr=fast"], "optimizer.lr=fast is not a number"),
    (["data.train_size=all"], "data.train_size=all is not an integer"),
    (["trainer.devices=true"], "trainer.devices=true is not an integer or text or a list"),
    (["model=mlp", "model.hidden=[a]"], "model.hidden[0]=a is not an integer"),
])
def test_a_value_of_the_wrong_type_is_refused(argv: list[str], expected: str) -> None:
    assert refusal(*argv).startswith(expected)


@pytest.mark.parametrize("argv", [
    ["model=mlp"], ["model=fast"], ["experiment=fashion_fast"], ["debug=fast", *TINY_SHAPES],
    ["-m", "hparams_search=optuna"], ["-m", "seed=1,2"], ["+extra=3"], ["~test"], ["seed=null"],
    ["trainer.max_epochs=${seed}"], ["resume=auto"], ["trainer.devices=2"], ["trainer.devices=[0,1]"],
    ["trainer.precision=bf16-mixed"], ["trainer.precision=32"],
    ["debug=fast", "trainer.limit_test_batches=0.5"],
    ["module.label_smoothing=1"], ["data.mean=[0.5,0.5,0.5]"], ["ckpt_path=last.ckpt"],
    ["trainer.gradient_clip_val=1"], ["++trainer.max_epochs=2"], ["hydra.run.dir=somewhere"],
])
def test_what_hydra_composes_is_accepted(argv: list[str]) -> None:
    check(*argv)


def test_an_image_folder_needs_only_its_root(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir(), (tmp_path / "dogs").mkdir()
    check("data=imagefolder", f"data.root={tmp_path}", "data.image_size=16")
    check("data=imagefolder", "data.root=/not/there/yet")  # the data module says so, in one line


@pytest.mark.parametrize("app", ["eval", "predict", "export"])
def test_the_other_entry_points_are_checked_the_same_way(app: str) -> None:
    register_resolvers()
    with pytest.raises(UserError, match="is not an integer"):
        check_command_line(CONF, app, [{"eval": "seed", "predict": "batch_size", "export": "check_batch"}[app]
                                       + "=abc"])


def test_every_declared_type_names_keys_that_exist() -> None:
    # A pattern that names no key would be a type nobody checks.
    from hydra import compose, initialize_config_dir

    register_resolvers()
    keys: set[str] = set()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name, overrides in [("train", ["data=cifar10"]), ("train", ["debug=fast"]),
                                ("train", ["data=imagefolder", "model=torchvision"]), ("eval", []),
                                ("predict", []), ("export", [])]:
            cfg = OmegaConf.to_container(compose(name, overrides=overrides), resolve=False)
            keys |= set(_leaf_keys(cfg, ""))
    for pattern in DECLARED_TYPES:
        assert any(fnmatchcase(key, pattern) for key in keys), pattern


def _leaf_keys(node: object, prefix: str) -> list[str]:
    if isinstance(node, dict):
        return [k for name, value in node.items() for k in _leaf_keys(value, f"{prefix}.{name}".lstrip("."))]
    return [prefix]


def run_train(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "train.py"), *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize(("override", "expected"), [
    ("trainer.max_epochs=abc", "error: trainer.max_epochs=abc is not an integer"),
    ("seed=notanumber", "error: seed=notanumber is not an integer"),
    ("data.batch_sizee=1",
     "error: data.batch_sizee is not a key of this config: did you mean data.batch_size"),
])
def test_train_py_stops_in_one_line_before_any_run_folder(
    override: str, expected: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    result = run_train(override, f"hydra.run.dir={run_dir}", f"paths.data_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [result.stderr.strip()]
    assert result.stderr.startswith(expected), result.stderr
    assert not run_dir.exists() and not (tmp_path / "outputs").exists()


def test_hydra_composes_a_users_option_as_the_check_does(user_configs: Path, tmp_path: Path) -> None:
    result = run_train("--config-dir", str(user_configs), "model=tiny", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert OmegaConf.create(result.stdout).model.hidden == [8]
