"""torchvision and timm networks: their derived layer lists, pretrained weights, freezing, errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.models import timm_classifier, torchvision_classifier
from layerscope.models.adapted import weights_preprocessing, without_pretrained
from layerscope.models.derived import derive_layers, pick_layers
from layerscope.models.layers import named_layers
from layerscope.training.module import scale_learning_rates, weight_decay_groups

RESNET18_LAYERS = 21  # 17 convolutions on the main path, 3 on the shortcuts, the fc layer


def test_resnet18_layers_are_its_convolutions_and_fc_in_forward_order() -> None:
    model = torchvision_classifier("resnet18", num_classes=3, image_size=32, layers="all")
    names = [name for name, _ in named_layers(model)]
    assert len(names) == model.layer_count == RESNET18_LAYERS
    assert names[:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    # The shortcut's convolution runs after the block's second convolution.
    assert names.index("layer2.0.downsample.0") == names.index("layer2.0.conv2") + 1
    assert names[-1] == "fc" == model.head
    assert all(isinstance(module, nn.Conv2d) for _, module in named_layers(model)[:-1])


def test_squeeze_excitation_gates_and_per_position_linear_layers_are_not_layers() -> None:
    mobile = torchvision_classifier("mobilenet_v3_small", num_classes=3, image_size=32, layers="all")
    names = [name for name, _ in named_layers(mobile)]
    assert not any(name.endswith((".fc1", ".fc2")) for name in names)  # the SE gates
    assert names[0] == "features.0.0" and names[-1] == "classifier.3"
    convnext = torchvision_classifier("convnext_tiny", num_classes=3, image_size=32, layers="all")
    linear = [name for name, module in named_layers(convnext) if isinstance(module, nn.Linear)]
    assert linear == ["classifier.2"]  # the blocks' linear layers act at every position


def test_the_views_get_an_even_subset_by_default() -> None:
    model = torchvision_classifier("efficientnet_b0", num_classes=3, image_size=32)
    every = derive_layers(model, torch.zeros(1, 3, 32, 32))
    shown = named_layers(model)
    assert len(shown) == 16 < model.layer_count == len(every)
    assert shown[0][1] is every[0][1] and shown[-1][1] is every[-1][1]
    assert [name for name, _ in pick_layers([(str(i), nn.Identity()) for i in range(10)], 4)] == \
        ["0", "3", "6", "9"]
    with pytest.raises(UserError, match=r"model.layers=1"):
        torchvision_classifier("resnet18", num_classes=3, image_size=32, layers=1)


def test_building_changes_nothing_of_the_network() -> None:
    torch.manual_seed(0)
    model = torchvision_classifier("resnet18", num_classes=3, image_size=32)
    state = torch.get_rng_state()
    bn = model.net.bn1
    assert model.training and bn.num_batches_tracked.item() == 0  # the tracing pass ran in eval mode
    named_layers(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_grey_images_are_repeated_into_three_channels() -> None:
    model = torchvision_classifier("resnet18", num_classes=3, in_channels=1, image_size=32).eval()
    grey = torch.rand(2, 1, 32, 32)
    assert torch.allclose(model(grey), model.net(grey.expand(-1, 3, -1, -1)))


def test_pretrained_weights_from_a_state_dict_file(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(1)
    source = resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = torchvision_classifier("resnet18", num_classes=4, image_size=32, weights=str(path))
    assert torch.equal(model.net.conv1.weight, source.conv1.weight)
    assert torch.equal(model.net.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.net.fc.out_features == 4  # the head is made anew for these classes
    with pytest.raises(UserError, match=r"does not fit this network"):
        torchvision_classifier("resnet34", num_classes=4, image_size=32, weights=str(path))
    with pytest.raises(UserError, match=r"no such file"):
        torchvision_classifier("resnet18", num_classes=4, weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match=r"not a readable state dict"):
        torchvision_classifier("resnet18", num_classes=4, weights=str(tmp_path / "junk.pth"))


def test_torchvision_weights_without_a_network_end_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(UserError, match=r"could not be downloaded.*resnet18-.*\.pth.*checkpoints"):
        torchvision_classifier("resnet18", num_classes=3, image_size=32, weights="DEFAULT")
    with pytest.raises(UserError, match=r"not a weights name of resnet18: choose one of IMAGENET1K_V1"):
        torchvision_classifier("resnet18", num_classes=3, weights="IMAGENET9K")


def test_timm_weights_without_a_network_end_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args: object, **kwargs: object) -> None:
        raise LocalEntryNotFoundError("no network and not in the cache")

    monkeypatch.setattr("timm.models._builder.load_state_dict_from_hf", offline)
    with pytest.raises(UserError, match=r"timm could not fetch resnet18.*Hugging Face cache"):
        timm_classifier("resnet18", num_classes=3, image_size=32, weights="DEFAULT")


def test_the_preprocessing_of_pretrained_weights_comes_from_their_metadata() -> None:
    config = {"_target_": "layerscope.models.torchvision_classifier", "arch": "resnet18",
              "weights": "DEFAULT"}
    found = weights_preprocessing(config)
    assert found is not None
    assert (found.mean, found.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert (found.crop_size, found.resize_size) == (224, 256)
    timm_found = weights_preprocessing({**config, "_target_": "layerscope.models.timm_classifier"})
    assert timm_found is not None and timm_found.crop_size == 224  # timm's resnet18.a1_in1k
    assert weights_preprocessing({**config, "weights": None}) is None
    assert without_pretrained(config)["weights"] is None  # a checkpoint never fetches weights again


def test_unknown_architectures_name_close_matches() -> None:
    with pytest.raises(UserError, match=r"model.arch=resnet19 is not a torchvision.*did you mean resnet18"):
        torchvision_classifier("resnet19", num_classes=3)
    with pytest.raises(UserError, match=r"model.arch=convnext_ato is not a timm model.*convnext_atto"):
        timm_classifier("convnext_ato", num_classes=3)
    with pytest.raises(UserError, match=r"vit_b_16 cannot run on 32x32 images"):
        torchvision_classifier("vit_b_16", num_classes=3, image_size=32)


def test_frozen_backbone_and_a_gentler_rate_for_pretrained_layers() -> None:
    frozen = torchvision_classifier("resnet18", num_classes=3, image_size=32, freeze="backbone")
    training = [name for name, p in frozen.named_parameters() if p.requires_grad]
    assert training == ["net.fc.weight", "net.fc.bias"]
    gentle = timm_classifier("resnet18", num_classes=3, image_size=32, backbone_lr_scale=0.1)
    optimizer = scale_learning_rates(torch.optim.SGD(weight_decay_groups(gentle), lr=0.5, weight_decay=1e-4))
    rates = [group["lr"] for group in optimizer.param_groups]
    assert rates == [0.5, 0.5, pytest.approx(0.05), pytest.approx(0.05)]
    head = {id(p) for p in gentle.net.get_classifier().parameters()}
    assert {id(p) for g in optimizer.param_groups[:2] for p in g["params"]} == head
    with pytest.raises(UserError, match=r"model.freeze=all"):
        torchvision_classifier("resnet18", num_classes=3, image_size=32, freeze="all")
