"""Out-of-distribution scores, their calibration, and the calibration each checkpoint carries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from layerscope import ood
from layerscope.checkpoint import read_checkpoint
from layerscope.inference import load_classifier
from layerscope.inference.loading import UncalibratedCheckpoint


def test_each_score_is_higher_for_a_flat_answer_than_a_confident_one() -> None:
    logits = torch.tensor([[9.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    table = ood.scores(logits)
    assert set(table) == set(ood.LOGIT_SCORES)  # no ReAct score without features, head and clip
    for name, values in table.items():
        confident, flat = values.tolist()
        assert confident < flat, name
    assert table["energy"].tolist() == pytest.approx((-torch.logsumexp(logits, 1)).tolist())
    assert table["max_logit"].tolist() == [-9.0, -1.0]


def test_react_clips_the_features_entering_the_head() -> None:
    """An image whose features run far above the clip gets the logits of the clipped features."""
    head = nn.Linear(2, 3)
    features = torch.tensor([[0.5, 0.2], [40.0, 0.1]])
    table = ood.scores(head(features), features, head, clip=1.0)
    clipped = head(torch.tensor([[0.5, 0.2], [1.0, 0.1]])).detach()
    assert table[ood.REACT].tolist() == pytest.approx(ood.energy(clipped).tolist())
    assert table[ood.REACT][1] != pytest.approx(table["energy"][1].item())


def test_the_calibration_keeps_the_share_it_promises_with_thresholds_seen() -> None:
    generator = torch.Generator().manual_seed(0)
    head = nn.Linear(8, 4)
    features = torch.randn(1001, 8, generator=generator).relu()
    logits = head(features).detach()
    calibration = ood.calibrate(logits, features, head, step=7)
    assert calibration.clip == pytest.approx(torch.quantile(features.flatten(), 0.9).item())
    assert calibration.score == ood.REACT
    for name, values in ood.scores(logits, features, head, calibration.clip).items():
        threshold = calibration.thresholds[name]
        assert 0.95 <= (values <= threshold).float().mean().item() < 0.95 + 2 / 1001
        assert threshold in values.tolist()
    assert (calibration.kept, calibration.images, calibration.step) == (0.95, 1001, 7)
    assert ood.Calibration.from_dict(calibration.to_dict()) == calibration
    without_head = ood.calibrate(logits, None, None, step=7)
    assert without_head.clip is None and without_head.score == ood.FALLBACK_SCORE == "energy"
    assert ood.Calibration.from_dict(without_head.to_dict()) == without_head


def test_the_head_is_the_last_layer_only_where_it_is_linear(tiny_run: Path) -> None:
    clf = load_classifier(tiny_run / "checkpoints" / "best.ckpt")
    assert ood.linear_head(clf.model) is clf.model.fc
    assert ood.linear_head(nn.Sequential(nn.Linear(2, 2))) is None  # no layer list


GOOD = {"thresholds": dict.fromkeys(ood.LOGIT_SCORES, 1.0), "clip": None, "kept": 0.95, "images": 3,
        "step": 1}


@pytest.mark.parametrize("saved", [
    None, [1], {**GOOD, "thresholds": {"energy": 1.0}},
    {**GOOD, "thresholds": dict.fromkeys(ood.LOGIT_SCORES, "x")},
    {**GOOD, "clip": 2.0},  # a clip level without its ReAct threshold
    {**GOOD, "images": "3"},
])
def test_a_malformed_calibration_reads_as_none(saved: object) -> None:
    assert ood.Calibration.from_dict(GOOD) is not None
    assert ood.Calibration.from_dict(saved) is None


def test_training_stores_the_calibration_of_each_checkpoints_weights(tiny_run: Path, data_dir: Path) -> None:
    """Both checkpoints of the tiny run are calibrated at the step of their weights, on its 200
    validation images, and those thresholds keep 95 % of those images when the classifier scores them."""
    for name in ("best", "last"):
        checkpoint = read_checkpoint(tiny_run / "checkpoints" / f"{name}.ckpt")
        calibration, why_not = checkpoint.ood_calibration()
        assert why_not is None and calibration is not None
        assert calibration.step == checkpoint.contents["global_step"] > 0
        assert calibration.images == 200
    clf = load_classifier(tiny_run / "checkpoints" / "best.ckpt")
    datamodule = instantiate(OmegaConf.load(tiny_run / ".hydra" / "config.yaml").data)
    datamodule.setup("fit")
    predictions = clf.predict(datamodule.val.images)
    assert predictions.in_distribution is not None
    # Training validated in the precision auto chose; the classifier scores in fp32.
    assert predictions.in_distribution.float().mean().item() == pytest.approx(0.95, abs=0.03)


def test_a_checkpoint_saved_after_its_last_validation_pass_reports_no_calibration(
    tiny_run: Path, tmp_path: Path
) -> None:
    contents = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    contents["global_step"] += 5  # a mid-epoch last.ckpt: the weights moved on since validation
    path = tmp_path / "mid-epoch.ckpt"
    torch.save(contents, path)
    calibration, why_not = read_checkpoint(path).ood_calibration()
    assert calibration is None and why_not is not None and "the last validation pass was at step" in why_not
    with pytest.warns(UncalibratedCheckpoint, match="carries no out-of-distribution calibration"):
        clf = load_classifier(path)
    predictions = clf.predict(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert predictions.in_distribution is None and predictions.ood_scores.shape == (2,)
