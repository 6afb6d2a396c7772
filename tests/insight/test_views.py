"""The pieces the views are drawn from: scaling, crops, probes, confusion counts."""

from __future__ import annotations

import io
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from layerscope.insight import render
from layerscope.insight.capture import LayerAnatomy
from layerscope.insight.feature_maps import feature_map_grid, probe_indices
from layerscope.insight.filters import first_layer_weight
from layerscope.insight.mistakes import confusion_matrix
from layerscope.insight.probes import balanced_accuracy, probe_scores
from layerscope.insight.top_patches import crop
from layerscope.models import MLP, cifar_resnet


def test_stretch_scales_each_tile_and_blacks_out_constant_ones() -> None:
    tiles = torch.stack([torch.tensor([[1.0, 3.0]]), torch.tensor([[5.0, 5.0]])])
    scaled = render.stretch(tiles)
    assert torch.equal(scaled[0], torch.tensor([[0.0, 1.0]]))
    assert torch.equal(scaled[1], torch.zeros(1, 2))
    signed = render.stretch_signed(torch.tensor([[[-2.0, 0.0, 1.0]]]))
    assert torch.allclose(signed, torch.tensor([[[0.0, 0.5, 0.75]]]))


def test_feature_map_grid_has_a_row_per_image_and_a_tile_per_channel() -> None:
    originals = torch.rand(3, 3, 8, 8)
    picture = feature_map_grid(originals, torch.rand(3, 5, 4, 4), size=8)
    pad = 2
    assert picture.shape == (3, pad + 3 * (8 + pad), pad + 6 * (8 + pad))
    assert torch.equal(picture[:, pad : pad + 8, pad : pad + 8], originals[0])
    dense = feature_map_grid(originals, torch.rand(3, 10), size=8)  # a fully connected layer
    assert dense.shape == (3, pad + 3 * (8 + pad), pad + 2 * (8 + pad))


def test_probe_images_are_the_first_of_each_class() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 1, 2])
    assert probe_indices(labels, 2).tolist() == [1, 4, 3, 5, 0, 2]


def test_crop_is_the_receptive_field_around_the_unit() -> None:
    image = torch.arange(64.0).view(1, 8, 8)
    anatomy = LayerAnatomy("x", receptive_field=3, jump=2, start=0.0, output_shape=(4, 4, 4))
    patch = crop(image, anatomy, position=1 * 4 + 2, width=4)  # unit (1, 2) -> pixel (2, 4)
    assert torch.equal(patch, image[:, 1:4, 3:6])
    corner = crop(image, anatomy, position=0, width=4)  # half outside the image: grey border
    assert corner.shape == (1, 3, 3) and corner[0, 0, 0] == render.BORDER
    dense = LayerAnatomy("fc", receptive_field=8, output_shape=(10,))
    assert torch.equal(crop(image, dense, 0, 1), image)


def test_probes_read_what_is_linearly_there_and_nothing_else() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (600,), generator=generator)
    parts = (torch.rand(600, 3, generator=generator) > 0.7).to(torch.uint8)
    informative = torch.cat([torch.nn.functional.one_hot(labels, 4).float(), parts.float()], 1)
    features = informative + 0.1 * torch.randn(600, 7, generator=generator)
    scores = probe_scores(features, labels, parts)
    assert scores["class"] > 0.95 and scores["parts"] > 0.95
    noise = torch.randn(600, 7, generator=generator)
    chance = probe_scores(noise, labels, parts)
    assert chance["class"] < 0.4 and abs(chance["parts"] - 0.5) < 0.1


def test_balanced_accuracy_is_half_for_always_no() -> None:
    truth = torch.tensor([[True, False], [False, False], [False, True], [False, False]])
    assert balanced_accuracy(torch.zeros_like(truth), truth) == 0.5
    assert balanced_accuracy(truth, truth) == 1.0


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    counts = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_first_layer_weights_as_pictures() -> None:
    assert first_layer_weight(cifar_resnet(8, 3, 10, 32), 3, 32).shape == (16, 3, 3, 3)
    assert first_layer_weight(MLP([20], 1, 10, 28), 1, 28).shape == (20, 1, 28, 28)


def test_logged_pictures_read_back_pixel_for_pixel(tmp_path: Path) -> None:
    writer = SummaryWriter(tmp_path)
    picture = torch.rand(3, 5, 7)
    render.log_image(writer, "a/picture", picture, step=3)
    figure, axes = render.new_figure(2.0, 1.5)
    axes.plot([0, 1], [1, 0])
    render.log_figure(writer, "a/chart", figure, step=4)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (logged,) = events.Images("a/picture")
    pixels = np.asarray(Image.open(io.BytesIO(logged.encoded_image_string)))
    assert logged.step == 3 and pixels.shape == (5, 7, 3)
    assert np.array_equal(pixels, render.as_pixels(picture))
    (chart,) = events.Images("a/chart")
    assert (chart.step, chart.width, chart.height) == (4, 200, 150)  # 100 dpi


def test_chart_margins_are_measured_once_per_tag_and_size() -> None:
    margins = render.Margins()  # one run's

    def chart(width: float) -> tuple:
        figure, axes = render.new_figure(width, 3.0)
        axes.set_xticks([0, 1], ["a long label on the axis", "another one"], rotation=70)
        return figure, figure.subplotpars

    with patch("matplotlib.figure.Figure.tight_layout", autospec=True,
               side_effect=lambda f: f.subplots_adjust(bottom=0.4)) as tight:
        for width in (4.0, 4.0, 5.0):
            figure, params = chart(width)
            margins.fit("c", figure)
            assert params.bottom == 0.4  # measured or reused, the labels fit
        render.Margins().fit("c", chart(4.0)[0])  # another run
    assert tight.call_count == 3  # once for 4 inches, once for 5, once for the other run


def test_captions_sit_in_the_margin_beside_their_rows_and_leave_the_picture_as_it_is() -> None:
    picture = torch.full((3, 60, 40), 0.5)
    pixels = render.captioned(picture, [(10, "first row"), (50, "second")], "a title", margin=100)
    top = pixels.shape[0] - 60
    assert pixels.shape == (top + 60, 140, 3) and top > 0
    assert np.array_equal(pixels[top:, 100:], render.as_pixels(picture))  # pasted pixel for pixel
    dark = pixels[:, :100].min(axis=2) < 128  # text in the margin

    def inked(rows: slice) -> bool:
        return bool(dark[rows].any())

    assert inked(slice(top + 4, top + 16)) and inked(slice(top + 44, top + 56))  # beside each row
    assert not inked(slice(top + 20, top + 40))  # nothing between them
    assert (pixels[:top].min(axis=2) < 128).any()  # the title above
