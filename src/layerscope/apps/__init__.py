"""Hydra entry points behind the root scripts and the ``layerscope-*`` console commands."""
