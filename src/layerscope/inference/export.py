"""A classifier as an ONNX or TorchScript file for serving, checked against PyTorch before it is kept.

The exported model takes the normalised float batch (N, C, H, W) and returns logits; the JSON
written beside it holds the class names and the preprocessing (resize, crop size, channels, mean, std), so
a server needs nothing else. The model is written under a temporary name, run on random inputs
and compared with PyTorch; only a model that passes is renamed into place, with its JSON.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from layerscope import ood
from layerscope.errors import UserError
from layerscope.files import TEMPORARY_SUFFIX, write_atomically
from layerscope.inference.loading import Classifier

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
Runner = Callable[[torch.Tensor], torch.Tensor]


def export_onnx(clf: Classifier, path: Path, example: torch.Tensor) -> Runner:
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


def export_torchscript(clf: Classifier, path: Path, example: torch.Tensor) -> Runner:
    """TorchScript by tracing; returns the reloaded module."""
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript files are still served widely.
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        torch.jit.trace(clf.model, example).save(str(path))
        return torch.jit.load(str(path)).eval()


EXPORTERS: dict[str, Callable[[Classifier, Path, torch.Tensor], Runner]] = {
    "onnx": export_onnx, "torchscript": export_torchscript,
}


def largest_difference(clf: Classifier, run: Runner, inputs: torch.Tensor) -> float:
    """The largest absolute difference between ``run``'s logits and PyTorch's on ``inputs``."""
    with torch.no_grad():
        return (run(inputs) - clf.model(inputs)).abs().max().item()


def export_checked(
    clf: Classifier, fmt: str, out_dir: Path, checkpoint: Path, check_batch: int = 16, tolerance: float = 1e-3
) -> dict[str, Any]:
    """Write ``out_dir/model.<fmt>`` and its JSON only if the model matches PyTorch; return the metadata.

    A failed check raises a UserError and leaves ``out_dir`` as it was: no new file, and an earlier
    export untouched.
    """
    if fmt not in FORMATS:
        raise UserError(f"format={fmt} is not supported: choose {' or '.join(FORMATS)}")
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FORMATS[fmt]
    unchecked = out_dir / f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}"
    shape = (clf.in_channels, clf.image_size, clf.image_size)
    # A fixed generator: the check is the same every time and leaves the global RNG alone.
    inputs = torch.randn(check_batch, *shape, generator=torch.Generator().manual_seed(0))
    try:
        run = EXPORTERS[fmt](clf, unchecked, inputs[:2])
        difference = largest_difference(clf, run, inputs)
        if difference > tolerance:
            raise UserError(f"the exported model differs from PyTorch by {difference:.2e} (more than "
                            f"tolerance={tolerance}); nothing was written")
        metadata = _metadata(clf, fmt, path.name, checkpoint, check_batch, difference)
        _keep(unchecked, path, metadata)
    except BaseException:
        unchecked.unlink(missing_ok=True)
        for folder in created:  # deepest first; only folders this call made, and only if empty
            with suppress(OSError):
                folder.rmdir()
        raise
    return metadata


def metadata_path(model_path: Path) -> Path:
    """Where the JSON describing ``model_path`` goes: beside it, named after it."""
    return model_path.with_name(f"{model_path.name}.json")


def _keep(unchecked: Path, path: Path, metadata: dict[str, Any]) -> None:
    """Rename the checked model into place, then write its JSON.

    The old JSON goes first, so that no moment (a crash between the two renames) leaves a JSON
    vouching for a model it did not check: at worst a model stands without its JSON.
    """
    with open(unchecked, "rb") as file:
        os.fsync(file.fileno())  # the model's bytes are on disk before its final name points at them
    metadata_path(path).unlink(missing_ok=True)
    os.replace(unchecked, path)
    write_atomically(metadata_path(path), (json.dumps(metadata, indent=2) + "\n").encode())


OOD_FORMULAS = {  # each score of layerscope.ood, written out for code that has only the logits
    "energy": "-logsumexp(logits)", "max_logit": "-max(logits)", "max_softmax": "-max(softmax(logits))",
    # f: the input of the last (linear) layer, whose weights and bias are W and b.
    ood.REACT: "-logsumexp(W @ min(f, clip) + b)",
}


def _metadata(
    clf: Classifier, fmt: str, file: str, checkpoint: Path, check_batch: int, difference: float
) -> dict[str, Any]:
    return {
        "format": fmt, "file": file, "input": "images", "output": "logits",
        "input_shape": ["batch", clf.in_channels, clf.image_size, clf.image_size], "classes": clf.classes,
        # resize_size: the shorter side is resized to it, then the centre size x size square taken.
        "preprocessing": {"channels": clf.in_channels, "size": clf.image_size, "resize_size": clf.resize_size,
                          "scale": 1 / 255,
                          "mean": clf.info["mean"], "std": clf.info["std"]},
        "checked": {"inputs": check_batch, "max_abs_difference": difference},
        "out_of_distribution": ood_metadata(clf),
        "checkpoint": str(checkpoint.resolve()),
    }


def ood_metadata(clf: Classifier) -> dict[str, Any] | None:
    """How a server flags an image unlike the training data from the exported logits; None where
    the checkpoint carries no calibration."""
    if clf.calibration is None:
        return None
    return {
        "score": clf.calibration.score, "formula": OOD_FORMULAS[clf.calibration.score],
        "threshold": clf.calibration.thresholds[clf.calibration.score],
        "clip": clf.calibration.clip,
        "in_distribution": "score <= threshold",
        "calibrated_on": {"validation_images": clf.calibration.images, "kept": clf.calibration.kept},
    }
