"""``python export.py ckpt_path=... format=onnx``: the model as ONNX or TorchScript, checked.

The exported model takes the normalised float batch (N, C, H, W) and returns logits; the JSON
written beside it holds the class names and the preprocessing (size, channels, mean, std), so
a server needs nothing else. Each export is run on random inputs and compared with PyTorch.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from layerscope.apps.cli import run_hydra
from layerscope.errors import UserError
from layerscope.inference import Classifier, load_classifier

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


def export_onnx(clf: Classifier, path: Path, example: torch.Tensor) -> Any:
    """ONNX through torch.export, batch size left free; returns a function running it in ONNX Runtime."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx.export needs it; fail here with a clear message)
    except ImportError as err:
        raise UserError("format=onnx needs ONNX support: pip install 'layerscope[export]'") from err
    torch.onnx.export(clf.model, (example,), str(path), input_names=["images"], output_names=["logits"],
                      dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
                      verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def export_torchscript(clf: Classifier, path: Path, example: torch.Tensor) -> Any:
    """TorchScript by tracing; returns the reloaded module."""
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript files are still served widely.
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        torch.jit.trace(clf.model, example).save(str(path))
        return torch.jit.load(str(path)).eval()


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the model and its metadata; check it against PyTorch; return the metadata."""
    if cfg.format not in FORMATS:
        raise UserError(f"format={cfg.format} is not supported: choose {' or '.join(FORMATS)}")
    ckpt = Path(cfg.ckpt_path).expanduser()
    clf = load_classifier(ckpt)
    out_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else ckpt.resolve().parent.parent / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FORMATS[cfg.format]
    shape = (clf.in_channels, clf.image_size, clf.image_size)
    # A fixed generator: the check is the same every time and leaves the global RNG alone.
    inputs = torch.randn(cfg.check_batch, *shape, generator=torch.Generator().manual_seed(0))
    run = (export_onnx if cfg.format == "onnx" else export_torchscript)(clf, path, inputs[:2])
    with torch.no_grad():
        difference = (run(inputs) - clf.model(inputs)).abs().max().item()
    if difference > cfg.tolerance:
        raise RuntimeError(f"the exported model differs from PyTorch by {difference:.2e} (> {cfg.tolerance})")
    metadata = {
        "format": cfg.format, "file": path.name, "input": "images", "output": "logits",
        "input_shape": ["batch", *shape], "classes": clf.classes,
        "preprocessing": {"channels": clf.in_channels, "size": clf.image_size, "scale": 1 / 255,
                          "mean": clf.info["mean"], "std": clf.info["std"]},
        "checked": {"inputs": cfg.check_batch, "max_abs_difference": difference},
        "checkpoint": str(ckpt.resolve()),
    }
    metadata_path = path.with_name(f"{path.name}.json")
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"Exported:  {path}\nMetadata:  {metadata_path}\n"
          f"Checked:   {cfg.check_batch} random inputs, largest difference from PyTorch {difference:.2e}")
    return metadata


def main(config_dir: Path | None = None) -> Any:
    """Console entry point ``layerscope-export`` (and ``python export.py``)."""
    return run_hydra(export, config_name="export", config_dir=config_dir)
