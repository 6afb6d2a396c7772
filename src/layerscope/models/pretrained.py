"""Pretrained weights for torchvision and timm networks: where they come from, what preprocessing they expect.

``model.weights`` is ``null`` (random initialisation), ``DEFAULT`` (the library's recommended
weights), a weights name (torchvision's ``IMAGENET1K_V1``, timm's pretrained tag ``in1k``), or the
path of a state dict saved with ``torch.save(model.state_dict(), path)``. Downloads go through the
libraries' own code and caches (torchvision: ``torch.hub``'s checkpoint folder; timm: the Hugging
Face cache); nothing here downloads by itself.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerscope.errors import UserError


@dataclass(frozen=True)
class Preprocessing:
    """What pretrained weights expect: per-channel mean and std, and the evaluation resize and crop."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_size: int  # the square the network sees
    resize_size: int  # evaluation images are resized (shorter side) to this, then centre-cropped


def is_path(weights: str | None) -> bool:
    """Whether ``model.weights`` names a file rather than a library's weights."""
    suffixes = (".pth", ".pt", ".bin", ".safetensors")
    return weights is not None and ("/" in weights or weights.endswith(suffixes))


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``: tensors only, so loading it can never run code."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"model.weights={path}: no such file; pass the path of a saved state dict")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged, foreign or pickled-object files fail in many ways
        raise UserError(f"model.weights={path} is not a readable state dict of tensors: {err}") from err
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.weights={path} holds no state dict (a dict of tensor names to tensors)")
    return state


def load_backbone(net: nn.Module, state: dict[str, torch.Tensor], head: str, source: str) -> None:
    """Load ``state`` into ``net``, except the classifier head ``head`` where its shape differs.

    The head is made for this data set's classes; every other weight must be in ``state`` and fit,
    or the file is for another network and a one-line error says so.
    """
    own = net.state_dict()
    unused = [k for k in state if k not in own]
    misfit = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    outside_head = [k for k in [*unused, *misfit, *missing] if not k.startswith(f"{head}.")]
    if outside_head:
        raise UserError(
            f"{source} does not fit this network: {len(outside_head)} weights differ "
            f"(e.g. {', '.join(outside_head[:3])}); pass weights of the same model.arch"
        )
    net.load_state_dict({k: v for k, v in state.items() if k in own and k not in misfit}, strict=False)


# --- torchvision -------------------------------------------------------------------------------
def torchvision_weights(arch: str, weights: str) -> Any:
    """The torchvision weights enum member that ``model.weights`` names for ``arch``."""
    from torchvision import models

    available = models.get_model_weights(arch)
    name = weights.removeprefix(f"{available.__name__}.")
    if name not in available.__members__:
        raise UserError(
            f"model.weights={weights} is not a weights name of {arch}: choose one of "
            f"{', '.join(available.__members__)}, null, or a path to a state dict"
        )
    return available[name]


def torchvision_state_dict(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """The state dict of torchvision's ``weights`` for ``arch``, from torch.hub's cache or downloaded."""
    member = torchvision_weights(arch, weights)
    try:
        return member.get_state_dict(progress=False, check_hash=True)
    except OSError as err:  # URLError is an OSError: no network, or a proxy in the way
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        raise UserError(
            f"model.weights={weights}: {member} could not be downloaded ({err}); put "
            f"{member.url.rsplit('/', 1)[-1]} from {member.url} into {folder}, "
            "or pass model.weights=/path/to/state_dict.pth"
        ) from err


def torchvision_preprocessing(arch: str, weights: str) -> Preprocessing:
    """The mean, std, resize and crop from the weights' own metadata (no download needed)."""
    transform = torchvision_weights(arch, weights).transforms()
    return Preprocessing(tuple(transform.mean), tuple(transform.std),
                         int(transform.crop_size[0]), int(transform.resize_size[0]))


def check_torchvision_arch(arch: str) -> None:
    """``arch`` must be one of torchvision's classification builders; else one line with close matches."""
    from torchvision import models

    names = models.list_models(module=models)
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise UserError(f"model.arch={arch} is not a torchvision classification model: {hint}")


# --- timm --------------------------------------------------------------------------------------
def import_timm() -> Any:
    """timm, an optional extra; one line saying how to install it where it is missing."""
    try:
        import timm
    except ImportError as err:
        raise UserError("model=timm needs timm: pip install -e '.[timm]'") from err
    return timm


def check_timm_arch(arch: str) -> None:
    """``arch`` must be one of timm's models; else one line with close matches."""
    timm = import_timm()
    names = timm.list_models()
    if arch.split(".")[0] not in names:
        close = difflib.get_close_matches(arch, names, n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
        raise UserError(f"model.arch={arch} is not a timm model: {hint}")


def timm_name(arch: str, weights: str) -> str:
    """timm's ``arch.tag`` for ``model.weights``: DEFAULT is the model's default pretrained tag."""
    return arch if weights == "DEFAULT" else f"{arch.split('.')[0]}.{weights}"


def timm_preprocessing(arch: str, weights: str) -> Preprocessing:
    """The mean, std, input size and crop fraction of timm's pretrained config (no download needed)."""
    timm = import_timm()
    try:
        config = timm.models.get_pretrained_cfg(timm_name(arch, weights), allow_unregistered=False)
    except RuntimeError as err:
        raise UserError(f"model.weights={weights} is not a pretrained tag of {arch} in timm: {err}") from err
    if config is None:
        name = timm_name(arch, weights)
        raise UserError(f"model.weights={weights}: timm has no pretrained weights called {name}")
    crop = int(config.input_size[-1])
    return Preprocessing(tuple(config.mean), tuple(config.std), crop, round(crop / config.crop_pct))
