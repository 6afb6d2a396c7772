"""A real (tiny) training run with insight on, read back from its TensorBoard event files."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.insight.conftest import EPOCHS, EVERY_SECOND_EPOCH, LAYERS


def _events(run_dir: Path) -> EventAccumulator:
    guidance = {"images": 0, "scalars": 0, "histograms": 0, "tensors": 0}
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance=guidance)
    accumulator.Reload()
    return accumulator


def _with_prefix(tags: list[str], prefix: str) -> list[str]:
    return sorted(t for t in tags if t.startswith(prefix))


def test_feature_maps_one_tag_per_layer_in_depth_order(runs: dict[str, Path]) -> None:
    events = _events(runs["default"])
    tags = _with_prefix(events.Tags()["images"], "feature_maps/")
    assert tags == [f"feature_maps/{layer}" for layer in LAYERS]
    # 10 classes x 1 image: rows of 32-pixel tiles; the image plus 16 channels (stem) per row.
    for tag, channels in ((tags[0], 16), (tags[-1], None)):
        images = events.Images(tag)
        assert [i.step for i in images] == EVERY_SECOND_EPOCH  # before training, then every 2nd epoch
        columns = 1 + (channels or 1)
        assert {(i.height, i.width) for i in images} == {(2 + 10 * 34, 2 + columns * 34)}


def test_filters_patches_and_figures_are_drawn(runs: dict[str, Path]) -> None:
    events = _events(runs["default"])
    images = events.Tags()["images"]
    filters = events.Images("filters/layer1")
    # 16 ResNet stem filters, 3x3 each, magnified to 24 pixels, 4 per row.
    assert [(f.height, f.width) for f in filters] == [(2 + 4 * 26, 2 + 4 * 26)] * (EPOCHS + 1)
    assert _with_prefix(images, "top_patches/") == [f"top_patches/{layer}" for layer in LAYERS]
    stem, last = events.Images("top_patches/01_stem")[-1], events.Images("top_patches/08_fc")[-1]
    # 4 channels x 9 patches, each the receptive field (3 px for the stem, the whole 32 px image
    # for the classifier) magnified 3 times (8 times for the tiny stem patches).
    assert (stem.height, stem.width) == (2 + 4 * (24 + 2), 2 + 9 * (24 + 2))
    assert (last.height, last.width) == (2 + 4 * (96 + 2), 2 + 9 * (96 + 2))
    for tag in ("mistakes/confusion_matrix", "mistakes/misclassified", "probe/accuracy_vs_depth",
                "gradients/norm_by_depth"):
        assert tag in images, tag
    assert [e.step for e in events.Images("mistakes/confusion_matrix")] == list(range(1, EPOCHS + 1))


def test_weights_biases_and_gradients_for_every_layer(runs: dict[str, Path]) -> None:
    events = _events(runs["default"])
    histograms, scalars = events.Tags()["histograms"], events.Tags()["scalars"]
    for kind in ("weights", "biases", "weight_gradients", "bias_gradients"):
        assert _with_prefix(histograms, f"{kind}/") == [f"{kind}/{layer}" for layer in LAYERS]
    steps = [e.step for e in events.Histograms("weights/01_stem")]
    assert steps and all(step % 4 == 0 for step in steps) and len(steps) >= 3
    for kind in ("grad_norm", "update_ratio"):
        assert _with_prefix(scalars, f"{kind}/") == [f"{kind}/{layer}" for layer in LAYERS]
    assert all(e.value > 0 for e in events.Scalars("grad_norm/01_stem"))
    ratios = [e.value for e in events.Scalars("update_ratio/08_fc")]
    assert ratios and all(0 < r < 1 for r in ratios)


def test_probe_scalars_for_every_layer_and_receptive_fields(runs: dict[str, Path]) -> None:
    events = _events(runs["default"])
    scalars = events.Tags()["scalars"]
    for kind in ("class", "parts"):
        per_layer = [t for t in _with_prefix(scalars, f"probe/{kind}/") if t.count("/") == 2]  # not per part
        assert per_layer == [f"probe/{kind}/{layer}" for layer in LAYERS]
        values = events.Scalars(f"probe/{kind}/08_fc")
        assert [v.step for v in values] == EVERY_SECOND_EPOCH
        assert all(0 <= v.value <= 1 for v in values)
    fields = [events.Scalars(f"receptive_field/{layer}")[0].value for layer in LAYERS]
    assert fields == [3, 5, 7, 9, 13, 17, 25, 32]


def test_mistakes_pr_curves_guide_layout_hparams_and_graph(runs: dict[str, Path]) -> None:
    events = _events(runs["default"])
    tensors = events.Tags()["tensors"]
    assert len(_with_prefix(tensors, "pr_curves/")) == 10
    guide = _with_prefix(tensors, "guide/")
    assert len(guide) >= 9
    text = events.Tensors("guide/00_start_here/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "weight" in text and "bias" in text
    assert "custom_scalars__config__" in tensors
    layout = events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    assert b"grad_norm" in layout and b"probe/class" in layout
    assert events.Tags()["graph"]
    assert "hparams/test_acc" in events.Tags()["scalars"]


def test_insight_off_logs_none_of_it(runs: dict[str, Path]) -> None:
    events = _events(runs["off"])
    tags = events.Tags()
    assert tags["images"] == [] and tags["histograms"] == []
    assert not [t for t in tags["scalars"] if t.split("/")[0] in
                ("probe", "grad_norm", "update_ratio", "receptive_field")]
    assert not [t for t in tags["tensors"] if t.startswith(("guide/", "pr_curves/", "custom_scalars"))]
    assert "val/acc" in tags["scalars"]  # the training curves are still there


def test_insight_does_not_change_training(runs: dict[str, Path]) -> None:
    assert "feature_vis/01_stem" in _events(runs["default"]).Tags()["images"]  # optimising images included
    weights = [torch.load(runs[c] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for c in ("default", "off")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


EXPECTED_TAGS = Path(__file__).with_name("expected_tags.json")


def logged_steps(run_dir: Path) -> dict[str, dict[str, list[int]]]:
    """Every tag of a run's event files with the steps it was logged at, by kind (images, scalars...)."""
    events = _events(run_dir)
    read = {"images": events.Images, "scalars": events.Scalars, "histograms": events.Histograms,
            "tensors": events.Tensors}
    return {kind: {tag: [event.step for event in read[kind](tag)] for tag in sorted(events.Tags()[kind])}
            for kind in read}


def test_the_views_log_the_same_tags_at_the_same_steps(runs: dict[str, Path]) -> None:
    """A change to how the views are run must not change what they log or when: the tags and steps of
    the tiny default run are kept in expected_tags.json (a deliberate change of a view rewrites it)."""
    actual = logged_steps(runs["default"])
    expected = json.loads(EXPECTED_TAGS.read_text())
    if actual != expected:
        written = Path(__file__).resolve().parents[2] / "outputs" / EXPECTED_TAGS.name
        written.parent.mkdir(exist_ok=True)
        written.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        for kind in expected.keys() | actual.keys():
            got, want = actual.get(kind, {}), expected.get(kind, {})
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            moved = sorted(tag for tag in want.keys() & got.keys() if want[tag] != got[tag])
            assert not (missing or extra or moved), (
                f"{kind}: missing {missing}, new {extra}, other steps {moved}; this run's are in {written}"
            )
