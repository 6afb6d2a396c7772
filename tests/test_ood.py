"""Out-of-distribution scores, their calibration, and the calibration each checkpoint carries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from layerscope import ood
from layerscope.checkpoint import read_checkpoint
from layerscope.inference import load_classifier
from layerscope.inference.loading import UncalibratedCheckpoint


def test_each_score_is_higher_for_a_flat_answer_than_a_confident_one() -> None:
    logits = torch.tensor([[9.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    for name, score in ood.SCORES.items():
        confident, flat = score(logits).tolist()
        assert confident < flat, name
    assert ood.energy(logits).tolist() == pytest.approx((-torch.logsumexp(logits, 1)).tolist())
    assert ood.max_logit(logits).tolist() == [-9.0, -1.0]
    assert ood.all_scores(logits).shape == (2, len(ood.SCORES))


def test_the_threshold_keeps_the_share_it_promises_and_is_a_score_seen() -> None:
    scores = torch.randn(1001, len(ood.SCORES), generator=torch.Generator().manual_seed(0))
    calibration = ood.calibrate(scores, step=7)
    for column, name in enumerate(ood.SCORES):
        threshold = calibration.thresholds[name]
        kept = (scores[:, column] <= threshold).float().mean().item()
        assert 0.95 <= kept < 0.95 + 2 / 1001
        assert threshold in scores[:, column].tolist()
    assert (calibration.kept, calibration.images, calibration.step) == (0.95, 1001, 7)
    assert ood.Calibration.from_dict(calibration.to_dict()) == calibration


@pytest.mark.parametrize("saved", [None, [1], {"thresholds": {"energy": 1.0}, "kept": 0.95, "images": 3,
                                               "step": 1}, {"thresholds": {n: "x" for n in ood.SCORES}}])
def test_a_malformed_calibration_reads_as_none(saved: object) -> None:
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
