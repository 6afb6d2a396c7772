"""explain_image: feature maps and Grad-CAM from one pass over the layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from layerscope.inference import Classifier
from layerscope.inference.explain import explain_image, grad_cam
from layerscope.models import cifar_resnet

INFO = {"classes": ["a", "b", "c"], "in_channels": 3, "image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3}


def test_explain_computes_the_feature_maps_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    clf = Classifier(cifar_resnet(depth=8, num_classes=3, image_size=16), INFO)
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    calls = []
    monkeypatch.setattr(clf, "feature_maps", lambda x: calls.append(x) or Classifier.feature_maps(clf, x))
    explain_image(clf, image, 1, tmp_path)
    assert len(calls) == 1
    assert (tmp_path / "grad_cam.png").is_file()
    assert len(list(tmp_path.glob("feature_maps_*.png"))) == len(list(clf.model.named_layers()))
    monkeypatch.undo()
    # Grad-CAM on its own still finds the last convolutional layer by itself.
    heat = grad_cam(clf, image, 1)
    assert heat.shape == (16, 16) and heat.min() >= 0 and heat.max() <= 1


def test_importing_explain_leaves_the_matplotlib_backend_alone() -> None:
    # A notebook's inline plots must keep working after Grad-CAM is imported (it draws with no pyplot).
    code = ("import matplotlib; matplotlib.use('svg'); import layerscope.inference.explain; "
            "print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg"
