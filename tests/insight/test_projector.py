"""The PROJECTOR tab: a tiny run's embeddings, sprites and metadata; a pass that leaves no trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch import nn

from layerscope.data.shapes import CLASS_NAMES
from layerscope.insight.projector import METADATA_HEADER, layer_embeddings, pooled
from tests.data.test_datamodule import make
from tests.insight.conftest import EPOCHS

VAL_SIZE = 200  # the tiny run's validation split, all of it under the default sample size
EMBEDDED = {"penultimate_08_fc.input": 64, "middle_05_stage2.block1.conv2": 32}  # tag: channels


def _projector(run_dir: Path) -> tuple[Path, ProjectorConfig]:
    logdir = run_dir / "tensorboard"
    config = text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    return logdir, config


def test_a_run_writes_both_layers_with_sprites_and_labels(runs: dict[str, Path], data_dir: Path) -> None:
    logdir, config = _projector(runs["default"])
    embeddings = {e.tensor_name: e for e in config.embeddings}
    assert sorted(embeddings) == sorted(f"{tag}:{EPOCHS:05d}" for tag in EMBEDDED)  # once, at the end
    data = make(data_dir)
    data.setup()
    true_names = [CLASS_NAMES[label] for label in data.val.labels[:VAL_SIZE].tolist()]
    state = torch.load(runs["default"] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for tag, channels in EMBEDDED.items():
        entry = embeddings[f"{tag}:{EPOCHS:05d}"]
        features = torch.tensor([[float(v) for v in line.split("\t")]
                                 for line in (logdir / entry.tensor_path).read_text().splitlines()])
        assert features.shape == (VAL_SIZE, channels)
        rows = [line.split("\t") for line in (logdir / entry.metadata_path).read_text().splitlines()]
        assert rows[0] == METADATA_HEADER == ["true", "predicted"]
        assert [row[0] for row in rows[1:]] == true_names
        predicted = [row[1] for row in rows[1:]]
        assert set(predicted) <= set(CLASS_NAMES)
        if tag.startswith("penultimate"):
            # The penultimate features are the classifier's input: its weights map them to the predictions.
            logits = features @ state["model.fc.weight"].T + state["model.fc.bias"]
            assert [CLASS_NAMES[i] for i in logits.argmax(1).tolist()] == predicted
        assert list(entry.sprite.single_image_dim) == [32, 32]
        with Image.open(logdir / entry.sprite.image_path) as sprite:
            assert sprite.size == (15 * 32, 15 * 32)  # a 15 x 15 grid holds the 200 images
            first = torch.from_numpy(np.asarray(sprite.convert("RGB"))[:32, :32].copy()).permute(2, 0, 1)
        # The sample's images in order (the sprite rounds each 0-1 value down to 8 bits).
        assert (first.int() - data.val.images[0].int()).abs().max() <= 1


def test_insight_off_writes_no_projector_files(runs: dict[str, Path]) -> None:
    written = {p.name for p in (runs["off"] / "tensorboard").rglob("*")}
    assert written and not written & {"projector_config.pbtxt", "tensors.tsv", "metadata.tsv", "sprite.png"}


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.fc = nn.Conv2d(4, 6, 3, padding=1), nn.Linear(6, 2)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("conv1", self.conv1), ("conv2", self.conv2), ("fc", self.fc)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_embeddings_are_pooled_features_and_leave_no_trace() -> None:
    model = _Net().train()
    images = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    running_mean, rng = model.bn.running_mean.clone(), torch.get_rng_state()
    embeddings, logits = layer_embeddings(model, model, images, batch_size=4)
    assert sorted(embeddings) == ["middle_02_conv2", "penultimate_03_fc.input"]
    model.eval()
    with torch.no_grad():
        middle = model.conv2(torch.relu(model.bn(model.conv1(images))))
        assert torch.allclose(embeddings["middle_02_conv2"], pooled(middle))  # global average pooling
        assert torch.allclose(embeddings["penultimate_03_fc.input"], middle.mean(dim=(2, 3)))
        assert torch.allclose(logits, model(images))
    model.train()
    # Eval mode (BatchNorm statistics untouched), every mode restored, hooks removed, no global draws.
    assert torch.equal(model.bn.running_mean, running_mean) and torch.equal(torch.get_rng_state(), rng)
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
