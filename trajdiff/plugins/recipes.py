"""Recipes that several domains offer alike."""

from __future__ import annotations

from trajdiff.plugins.spec import Recipe

__all__ = ["window_mlp_recipe"]


def window_mlp_recipe(width: int = 256, depth: int = 3) -> Recipe:
    """The window MLP (`trajdiff.core.networks.window_mlp`: one MLP over the whole window, whose blocks cost the same
    whatever the token count) predicting the clean window, trained with one noise level per window and the history
    always clean: full-sequence forecasts at a fraction of the transformer's cost (`benchmarks/throughput.py`)."""
    return Recipe("window MLP, one noise level per window (faster forecasts)",
                  {"network": {"kind": "window_mlp", "dim": None, "length": None, "width": width, "depth": depth},
                   "parametrization": "x0", "noise": "shared", "history_prob": 1.0})
