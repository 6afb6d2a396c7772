"""``python export.py ckpt_path=... format=onnx``: the model as ONNX or TorchScript, checked.

The work is :func:`layerscope.inference.export.export_checked`; this main finds the checkpoint
and the folder, and prints where the files went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from layerscope.apps.cli import note, run_hydra
from layerscope.checkpoint import run_folder
from layerscope.inference import load_classifier
from layerscope.inference.export import export_checked, metadata_path


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the model and its metadata once it matches PyTorch; return the metadata."""
    ckpt = Path(cfg.ckpt_path).expanduser()
    clf = load_classifier(ckpt, say=note)
    out_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else run_folder(ckpt) / "export"
    metadata = export_checked(clf, cfg.format, out_dir, ckpt, cfg.check_batch, cfg.tolerance)
    path = out_dir / metadata["file"]
    print(f"Exported:  {path}\nMetadata:  {metadata_path(path)}\nChecked:   {cfg.check_batch} random inputs, "
          f"largest difference from PyTorch {metadata['checked']['max_abs_difference']:.2e}")
    return metadata


def main(config_dir: Path | None = None) -> Any:
    """Console entry point ``layerscope-export`` (and ``python export.py``)."""
    return run_hydra(export, config_name="export", config_dir=config_dir)
