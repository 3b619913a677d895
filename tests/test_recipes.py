"""Training recipes are configurations of the one training path, and its general options (label conditioning with
classifier-free dropout, rolling noise, values a recipe stores, further trainer options) serve any domain."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from trajdiff import api
from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.manager import Plugins
from trajdiff.plugins.spec import Domain, Encoder, ModelDefaults, Recipe, TrainingSet, hookimpl

TINY = {"kind": "transformer", "width": 16, "depth": 1, "heads": 2}


class _Scale(Encoder):
    """Divides by the training data's spread; one row per token."""

    def __init__(self) -> None:
        self.std = 1.0

    @property
    def dim(self) -> int:
        return 1

    def fit(self, episodes: Episodes) -> _Scale:
        self.std = float(np.concatenate(episodes.sequences).std())
        return self

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        return window / self.std, {}

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        return np.asarray(x) * self.std

    def state_dict(self) -> dict[str, Any]:
        return {"std": self.std}


def _store(trained: TrainingSet) -> dict[str, Any]:
    assert trained.labels is not None
    return {"windows": len(trained.windows), "per_label": np.bincount(trained.labels).tolist()}


class Waves(Domain):
    """Sines and ramps, each episode's kind in its meta; training windows are doubled with their negatives."""

    name = "waves"

    def load(self, source: Any, **options: Any) -> Episodes:
        t = np.arange(40.0)[:, None]
        kinds = ["sine", "ramp", "sine"] if source == "three" else ["sine", "ramp", "saw"]
        rows = {"sine": np.sin(t / 3), "ramp": t / 40, "saw": t % 5}
        return Episodes([rows[k] for k in kinds], ["v"], meta=[{"kind": k} for k in kinds])

    def make_encoder(self, **options: Any) -> Encoder:
        return _Scale()

    def encoder_from_state(self, state: dict[str, Any]) -> Encoder:
        encoder = _Scale()
        encoder.std = state["std"]
        return encoder

    def defaults(self) -> ModelDefaults:
        return ModelDefaults(history=4, horizon=4, network=TINY, steps=3, batch_size=8)

    def augment_windows(self, windows: np.ndarray, encoder: Encoder) -> np.ndarray:
        return np.concatenate([windows, -windows])

    def recipes(self) -> dict[str, Recipe]:
        return {
            "by_kind": Recipe("label-conditioned, rolling", {"label": "kind", "noise": "rolling", "cond_dropout": 0.25,
                                                             "training": {"warmup_steps": 2}}, store=_store),
            "fixed": Recipe("two known kinds", {"label": "kind", "labels": ["sine", "ramp"]}),
            "typo": Recipe("a field ModelDefaults lacks", {"horizn": 3}),
            "clash": Recipe("sets steps twice", {"training": {"steps": 5}}),
        }


@pytest.fixture()
def registry() -> Plugins:
    registry = Plugins(load_entry_points=False)
    assert registry.register(SimpleNamespace(trajdiff_domains=hookimpl(lambda: [Waves()])), "waves")
    return registry


def test_a_recipe_of_any_domain_trains_a_label_conditioned_rolling_model(registry: Plugins, tmp_path: Path) -> None:
    summary = api.train("waves", "three", tmp_path / "m", recipe="by_kind", steps=4, plugins=registry, progress=False)
    assert summary.steps == 4 and summary.windows == 2 * 3 * 33  # the caller's steps win; augmented windows count
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    defaults = config["extra"]["defaults"]
    assert defaults["labels"] == ["ramp", "sine"] and defaults["network"]["cond_dim"] == 2
    training = config["training"]
    assert (training["noise"], training["window"], training["history"]) == ("rolling", 4, 4)
    assert (training["cond_dropout"], training["warmup_steps"], training["steps"]) == (0.25, 2, 4)
    # labels follow the augmented copies: two sine episodes and one ramp, twice
    assert config["extra"]["recipe"] == {"name": "by_kind", "stored": {"windows": 198, "per_label": [66, 132]}}
    loaded = api.load_model(tmp_path / "m", plugins=registry)
    assert loaded.defaults.label == "kind" and loaded.defaults.labels == ["ramp", "sine"]


def test_recipe_errors_are_clear(registry: Plugins, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no training recipe 'nope'; its recipes: by_kind \(label-conditioned"):
        api.train("waves", "three", tmp_path / "x", recipe="nope", plugins=registry)
    with pytest.raises(ConfigError, match=r"unknown model option\(s\) \['horizn'\]"):
        api.train("waves", "three", tmp_path / "x", recipe="typo", plugins=registry)
    with pytest.raises(ConfigError, match=r"training options \['steps'\]"):
        api.train("waves", "three", tmp_path / "x", recipe="clash", plugins=registry, progress=False)
    with pytest.raises(DataError, match=r"'saw' \(episode '2'\)"):
        api.train("waves", "other", tmp_path / "x", recipe="fixed", plugins=registry, progress=False)


def test_without_a_recipe_the_model_is_unconditional(registry: Plugins, tmp_path: Path) -> None:
    api.train("waves", "three", tmp_path / "m", plugins=registry, progress=False)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "recipe" not in config["extra"] and config["extra"]["defaults"]["label"] is None
    assert not config["network"].get("cond_dim") and config["training"]["cond_dropout"] == 0.0


def test_recipes_that_are_not_recipe_objects_break_the_contract() -> None:
    class Described(Waves):
        name = "described"

        def recipes(self) -> dict[str, Any]:
            return {"fast": "a description only"}

    registry = Plugins(load_entry_points=False)
    registry.register(SimpleNamespace(trajdiff_domains=hookimpl(lambda: [Described()])), "described")
    assert "described" not in registry.domains()
    assert "recipes() must map names to trajdiff Recipe objects" in str(registry.failures[0])
