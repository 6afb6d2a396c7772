"""layerscope: train a deep CNN from the shell and watch, layer by layer, what it learns.

``from layerscope import load_classifier`` loads a checkpoint for inference;
``from layerscope import logged_scalars`` reads back the scalars a run logged.
"""

from typing import Any

__all__ = ["load_classifier", "logged_scalars"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``import layerscope.models`` stays light.
    if name == "load_classifier":
        from layerscope.inference import load_classifier

        return load_classifier
    if name == "logged_scalars":
        from layerscope.training.logged import logged_scalars

        return logged_scalars
    raise AttributeError(f"module 'layerscope' has no attribute {name!r}")
