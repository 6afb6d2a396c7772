"""Using a trained model: load a checkpoint, predict, explain, export.

``from layerscope.inference import load_classifier`` (or ``from layerscope import load_classifier``).
"""

from layerscope.inference.loading import Classifier, Predictions, image_files, load_classifier

__all__ = ["Classifier", "Predictions", "image_files", "load_classifier"]
