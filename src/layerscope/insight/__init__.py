"""The views that show the inside of a network in TensorBoard while it trains.

``Insight`` (``callback.py``) is the one Lightning callback: ``conf/insight/`` builds it with one entry
per view, each view a plain class (``base.View``) drawing from a ``base.Context``. What the views
share: ``inputs`` (what a view may read of the data and the model, checked), ``base`` (the view
interface, when views draw, the context and the results so far), ``sample`` (the validation sample
and what each layer made of it), ``capture`` (hooks and inspection passes) and ``render`` (pictures).
"""

from layerscope.insight.base import Context, EpochView, View
from layerscope.insight.callback import Insight
from layerscope.insight.discovery import ConceptDiscovery
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
    "ConceptDiscovery", "Context", "Dissection", "EpochView", "FeatureMaps", "FeatureVisualisation", "Guide",
    "Insight", "LayerFilters", "LayerProbes", "LayerStory", "Mistakes", "Projector", "TopPatches", "View",
    "WeightsAndGradients",
]
