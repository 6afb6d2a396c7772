"""Every model family: output shapes, parameter counts, the named-layer contract, bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.models import MLP, FastResNet, ShallowCNN, cifar_plain, cifar_resnet

BUILDERS = {
    "deep": lambda **kw: cifar_resnet(20, **kw),
    "plain": lambda **kw: cifar_plain(20, **kw),
    "shallow": lambda **kw: ShallowCNN((16, 32, 64), **kw),
    "mlp": lambda **kw: MLP((64, 32), **kw),
    "fast": lambda **kw: FastResNet((8, 16, 16, 32), 2, **kw),
}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28)])
def test_output_shape(name: str, channels: int, size: int) -> None:
    model = BUILDERS[name](in_channels=channels, num_classes=7, image_size=size)
    assert model(torch.randn(4, channels, size, size)).shape == (4, 7)


@pytest.mark.parametrize(("depth", "params"), [(20, 269_722), (32, 464_154), (56, 853_018)])
def test_resnet_parameter_counts_match_he_et_al(depth: int, params: int) -> None:
    # He et al. 2016, table 6: 0.27 M, 0.46 M and 0.85 M parameters.
    assert count(cifar_resnet(depth)) == params
    assert count(cifar_plain(depth)) == params  # option-A shortcuts add no parameters


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_named_layers_count_the_weighted_layers(depth: int) -> None:
    layers = cifar_resnet(depth).named_layers()
    assert len(layers) == depth
    assert layers[0][0] == "stem" and layers[-1][0] == "fc"
    assert len({name for name, _ in layers}) == depth


@pytest.mark.parametrize("name", BUILDERS)
def test_named_layers_run_input_side_first(name: str) -> None:
    model = BUILDERS[name](in_channels=3, num_classes=10, image_size=32)
    order: list[str] = []
    names = {id(module): layer for layer, module in model.named_layers()}
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(names[id(m)]))
             for _, m in model.named_layers()]
    model(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert order == [layer for layer, _ in model.named_layers()]


@pytest.mark.parametrize("name", BUILDERS)
def test_relus_are_modules_and_not_in_place(name: str) -> None:
    model = BUILDERS[name](in_channels=3, num_classes=10, image_size=32)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and not any(m.inplace for m in relus)


def test_plain_has_no_shortcuts_and_differs_from_deep() -> None:
    torch.manual_seed(0)
    deep = cifar_resnet(20)
    torch.manual_seed(0)
    flat = cifar_plain(20)
    flat.load_state_dict(deep.state_dict())
    x = torch.randn(2, 3, 32, 32)
    deep.eval(), flat.eval()
    assert not torch.allclose(deep(x), flat(x))  # same weights, only the shortcuts differ


@pytest.mark.parametrize("depth", [21, 19, 2, 0])
def test_invalid_depth_is_a_user_error(depth: int) -> None:
    with pytest.raises(UserError, match=f"model.depth={depth}.*6n\\+2"):
        cifar_resnet(depth)


def test_bad_widths_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"model\.channels"):
        ShallowCNN((8,))
    with pytest.raises(UserError, match=r"model\.hidden"):
        MLP(())


def test_resnet_ablations_swap_activation_and_batchnorm() -> None:
    sigmoid = cifar_resnet(20, 3, 10, 32, activation="sigmoid")
    assert all(isinstance(m, nn.Sigmoid) for name, m in sigmoid.named_layers() if name != "fc")
    bare = cifar_resnet(20, 3, 10, 32, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bare.modules())
    assert all(m.bias is not None for m in bare.modules() if isinstance(m, nn.Conv2d))  # biases return
    assert len(bare.named_layers()) == 20 and bare(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(UserError, match=r"model\.activation=swish is not known"):
        cifar_resnet(20, activation="swish")


@pytest.mark.parametrize(("stem_layers", "layers"), [(1, 9), (2, 10)])
def test_fast_counts_its_weighted_layers(stem_layers: int, layers: int) -> None:
    model = FastResNet(stem_layers=stem_layers, in_channels=1, image_size=28)
    named = model.named_layers()
    assert len(named) == layers == sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules())
    assert named[0][0] == "stem.conv1" and named[-1][0] == "fc"
    assert count(model) > 2.5 * count(cifar_resnet(20, in_channels=1))  # wide: many parameters, few layers


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"widths": (8, 16, 32)}, "model.widths"), ({"stem_layers": 3}, "model.stem_layers"),
    ({"image_size": 4}, "data.image_size=4"),
])
def test_fast_bad_arguments_are_user_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        FastResNet(**kwargs)
