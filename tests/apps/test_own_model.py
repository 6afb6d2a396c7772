"""A torchvision or timm network trained on a folder of photos streamed from disk, looked inside,
then predicted with, evaluated and exported from its checkpoint: the README's "Your own photos"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from layerscope.apps.train import train_with
from layerscope.data.photo_folder import CLASSES, write_photo_folder
from layerscope.inference import load_classifier
from layerscope.models.layers import layer_tag, named_layers
from tests.apps.test_inference_cli import run
from tests.conftest import CONF, TINY_SHAPES

SHOWN_LAYERS = 5
FAMILIES = {  # a residual network, a mobile network with squeeze-excitation, a ConvNeXt
    "resnet18": ["model=torchvision", "model.arch=resnet18"],
    "mobilenet_v3_small": ["model=torchvision", "model.arch=mobilenet_v3_small"],
    "convnext_atto": ["model=timm", "model.arch=convnext_atto"],
}
SMALL = ["data=imagefolder", "data.image_size=32", "data.val_size=16", "data.test_size=16",
         "data.batch_size=16",
         "trainer.max_epochs=1", "trainer.precision=32-true", "trainer.num_sanity_val_steps=0",
         "data.source.cache=disk", "data.num_workers=1", f"model.layers={SHOWN_LAYERS}",
         "insight.top_patches.sample_size=16", "insight.probes.sample_size=16",
         "insight.layer_story.sample_size=16", "insight.layer_story.feature_vis_steps=2",
         "insight.weights.every_n_steps=2"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_photo_folder(root, per_class=16, min_side=40, max_side=70)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> dict[str, Path]:
    runs = {}
    for name, model in FAMILIES.items():
        runs[name] = tmp_path_factory.mktemp(name)
        train_with([*model, f"data.root={photos}", *SMALL], output_dir=runs[name], config_dir=CONF)
    return runs


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_view_is_drawn_for_the_derived_layers(trained: dict[str, Path], name: str) -> None:
    classifier = load_classifier(trained[name] / "checkpoints" / "best.ckpt")
    layers = named_layers(classifier.model)
    assert len(layers) == SHOWN_LAYERS
    events = EventAccumulator(str(trained[name] / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    images, scalars = events.Tags()["images"], events.Tags()["scalars"]
    tags = [layer_tag(i, layer) for i, (layer, _) in enumerate(layers)]
    assert sorted(t for t in images if t.startswith("feature_maps/")) == [f"feature_maps/{t}" for t in tags]
    spatial = tags[:-1]  # the classifier head has no map of patches
    assert {f"top_patches/{t}" for t in spatial} <= set(images)
    assert "filters/layer1" in images and "layer_story" in images
    assert {f"probe/class/{t}" for t in tags} <= set(scalars)
    assert {f"grad_norm/{t}" for t in tags} <= set(scalars)
    metrics = json.loads((trained[name] / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1 and metrics["train/img_per_s"] > 0


def test_predict_evaluate_and_export_the_checkpoint(
    trained: dict[str, Path], photos: Path, tmp_path: Path
) -> None:
    checkpoint = trained["resnet18"] / "checkpoints" / "best.ckpt"
    predicted = run("predict.py", f"ckpt_path={checkpoint}", f"input={photos / 'star'}", "explain=true",
                    cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 16 and all(row["label"] in CLASSES for row in rows)
    assert len([p for p in (tmp_path / "explanations").rglob("*.png")]) >= 16
    data = ["data=imagefolder", f"data.root={photos}", "data.image_size=32", "data.val_size=16",
            "data.test_size=16", "data.source.cache=disk"]
    evaluated = run("eval.py", f"ckpt_path={checkpoint}", *data, f"hydra.run.dir={tmp_path / 'eval'}",
                    cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] == 16
    exported = run("export.py", f"ckpt_path={checkpoint}", f"out_dir={tmp_path / 'export'}", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    metadata = json.loads((tmp_path / "export" / "model.onnx.json").read_text())
    assert metadata["checked"]["max_abs_difference"] < 1e-3
    assert metadata["preprocessing"]["size"] == metadata["preprocessing"]["resize_size"] == 32
    clf = load_classifier(checkpoint)
    assert clf.predict(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).probs.shape == (2, len(CLASSES))


def test_pretrained_weights_bring_their_preprocessing_into_the_checkpoint(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    imagenet = resnet18(num_classes=1000).state_dict()  # stands for the download: no network in tests
    monkeypatch.setattr("layerscope.models.pretrained.torchvision_state_dict", lambda arch, weights: imagenet)
    overrides = [*FAMILIES["resnet18"], "model.weights=DEFAULT", "model.freeze=backbone",
                 f"data.root={photos}", *SMALL, "insight=off"]
    train_with([o for o in overrides if not o.startswith("insight.")], output_dir=tmp_path, config_dir=CONF)
    clf = load_classifier(tmp_path / "checkpoints" / "best.ckpt")
    assert clf.info["mean"] == pytest.approx([0.485, 0.456, 0.406])  # ResNet18_Weights' own metadata
    assert clf.info["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert clf.resize_size == round(32 * 256 / 224)  # its 256 -> 224 resize, scaled to 32 px
    # Frozen: every weight but the new head is still the pretrained one.
    assert torch.equal(clf.model.net.layer3[0].conv1.weight, imagenet["layer3.0.conv1.weight"])
    assert not torch.equal(clf.model.net.fc.weight[:5], imagenet["fc.weight"][:5])


def test_a_torchvision_network_is_dissected_on_shapes(tmp_path: Path, data_dir: Path) -> None:
    overrides = [*FAMILIES["resnet18"], *TINY_SHAPES, "trainer.max_epochs=1", "data.batch_size=100",
                 "trainer.precision=32-true", "trainer.num_sanity_val_steps=0",
                 f"model.layers={SHOWN_LAYERS}",
                 "insight.dissection.sample_size=60", "insight.top_patches.sample_size=60",
                 "insight.probes.sample_size=60", "insight.layer_story.sample_size=60",
                 "insight.layer_story.feature_vis_steps=2"]
    train_with(overrides, output_dir=tmp_path, data_dir=data_dir, config_dir=CONF)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    layers = named_layers(load_classifier(tmp_path / "checkpoints" / "best.ckpt").model)
    convolutions = [layer_tag(i, name) for i, (name, _) in enumerate(layers[:-1])]
    scalars = events.Tags()["scalars"]
    for kind in ("edge", "part", "object"):
        assert {f"dissection/{kind}/{tag}" for tag in convolutions} <= set(scalars)
        shares = [events.Scalars(f"dissection/{kind}/{tag}")[-1].value for tag in convolutions]
        assert all(0 <= share <= 1 for share in shares)
    assert "dissection/best_detectors" in events.Tags()["images"]
