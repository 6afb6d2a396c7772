"""Lightning callbacks that show the inside of a network in TensorBoard while it trains.

Each module is one view; ``conf/insight/`` switches them on and sets how often and how much they log.
What they share: ``inputs`` (what a view may read of the data and the model, checked), ``base`` (when
and where views draw), ``sample`` (the validation sample and what each layer made of it), ``capture``
(hooks and inspection passes) and ``render`` (pictures).
"""

from layerscope.insight.dissection import Dissection
from layerscope.insight.feature_maps import FeatureMaps
from layerscope.insight.feature_vis import FeatureVisualisation
from layerscope.insight.filters import LayerFilters
from layerscope.insight.guide import Guide
from layerscope.insight.layer_story import LayerStory
from layerscope.insight.mistakes import Mistakes
from layerscope.insight.probes import LayerProbes
from layerscope.insight.projector import Projector
from layerscope.insight.top_patches import TopPatches
from layerscope.insight.weights import WeightsAndGradients

__all__ = [
    "Dissection", "FeatureMaps", "FeatureVisualisation", "Guide", "LayerFilters", "LayerProbes", "LayerStory",
    "Mistakes", "Projector", "TopPatches", "WeightsAndGradients",
]
