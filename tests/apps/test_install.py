"""The wheel installs, and its console scripts run from any folder with the configs it carries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, TINY_SHAPES

pytestmark = pytest.mark.slow


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH: only what the environment itself holds may be imported.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment holding the wheel built from this checkout; the dependencies are this one's."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # a copy, so that building leaves nothing in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
        "-w", work / "wheels", source, cwd=work)
    (wheel,) = (work / "wheels").glob("layerscope-*.whl")

    env = work / "env"
    run(sys.executable, "-m", "venv", "--without-pip", env, cwd=work)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(run(env / "bin" / "python", "-c", purelib, cwd=work).stdout.strip())
    # The dependencies (and pip) come from this environment; a path in a .pth file is not a site
    # folder, so this environment's own .pth files (its editable layerscope) are not read.
    (site_packages / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(env / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
        wheel, cwd=work)
    return env


def test_the_installed_package_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    where = run(installed / "bin" / "python", "-c",
                "import layerscope.apps.cli as c; print(c.__file__); print(c.default_config_dir())",
                cwd=tmp_path).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in where), where
    assert (Path(where[1]) / "model" / "deep.yaml").is_file()


def test_layerscope_train_runs_from_an_empty_folder(installed: Path, tmp_path: Path, data_dir: Path) -> None:
    empty = tmp_path / "anywhere"
    empty.mkdir()
    run(installed / "bin" / "layerscope-train", "debug=fast", *TINY_SHAPES, "model.depth=8",
        f"paths.data_dir={data_dir}", "trainer.enable_progress_bar=false", cwd=empty)
    (run_dir,) = (empty / "outputs").glob("*/*")  # the default run folder, under the working folder
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    # Hydra read the configs the wheel installed, not the checkout's.
    sources = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.config_sources
    main = next(s for s in sources if s.provider == "main")
    assert Path(main.path).is_relative_to(installed) and main.path.endswith("layerscope/conf")


@pytest.mark.parametrize("script", ["layerscope-eval", "layerscope-predict", "layerscope-export"])
def test_the_other_console_scripts_compose_their_configs(
    installed: Path, tmp_path: Path, script: str
) -> None:
    printed = run(installed / "bin" / script, "ckpt_path=best.ckpt", "--cfg", "job", cwd=tmp_path).stdout
    assert OmegaConf.create(printed).ckpt_path == "best.ckpt"
