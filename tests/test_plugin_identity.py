"""Plugin identity: names several plugins claim are errors naming both packages and never replace one another,
``package:name`` picks one, `trajdiff plugins` lists collisions, models load only with the package that wrote them,
and a hook's wrong-type result is reported once."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from trajdiff import api
from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError
from trajdiff.plugins import manager
from trajdiff.plugins.manager import (
    AmbiguousName,
    PluginError,
    Plugins,
    PluginVersionWarning,
    Provider,
    UnknownName,
)
from trajdiff.plugins.spec import DatasetCard, Domain, Encoder, ModelDefaults, hookimpl

TINY = {"kind": "transformer", "width": 16, "depth": 1, "heads": 2}


class _Scale(Encoder):
    def __init__(self, std: float = 1.0) -> None:
        self.std = std

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


class Genuine(Domain):
    """The domain 'toy' as its own package (toy-plugin) ships it."""

    name = "toy"
    summary = "the genuine toy"

    def __init__(self, encoder: Encoder | None = None) -> None:
        self.encoder = encoder

    def load(self, source: Any, **options: Any) -> Episodes:
        t = np.arange(30.0)[:, None]
        return Episodes([np.sin(t / 3), np.cos(t / 4)], ["v"])

    def make_encoder(self, **options: Any) -> Encoder:
        return _Scale()

    def encoder_from_state(self, state: dict[str, Any]) -> Encoder:
        return _Scale(state["std"])

    def defaults(self) -> ModelDefaults:
        return ModelDefaults(history=4, horizon=4, network=TINY, steps=2, batch_size=8)

    def costs(self) -> dict[str, Any]:
        return {"own": lambda x: x.sum(dim=(1, 2))}

    def with_encoder(self, encoder: Encoder) -> Domain:
        return type(self)(encoder)  # a new instance per model, as real domains make


class Impostor(Genuine):
    """Another package's domain of the same name."""

    summary = "an impostor"


def _plugin(**hooks: Any) -> SimpleNamespace:
    return SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


GENUINE = ("toys", _plugin(trajdiff_domains=lambda: [Genuine()]), "toy-plugin", "1.0")
IMPOSTOR = ("acme", _plugin(trajdiff_domains=lambda: [Impostor()]), "acme-plugin", "2.0")


def _registry(*plugins: tuple[str, object, str, str]) -> Plugins:
    registry = Plugins(load_entry_points=False)
    for name, plugin, package, version in plugins:
        assert registry.register(plugin, name, package, version)
    return registry


# -- collisions: both kept, the plain name is an error naming both packages, package:name picks -------------------


def test_two_packages_with_one_domain_name_neither_replaces_the_other() -> None:
    registry = _registry(IMPOSTOR, GENUINE)  # the impostor registers first (entry points sort by name)
    with pytest.raises(AmbiguousName) as raised:
        registry.domain("toy")
    message = str(raised.value)
    assert "acme-plugin 2.0" in message and "toy-plugin 1.0" in message
    assert "'acme-plugin:toy' or 'toy-plugin:toy'" in message
    assert isinstance(raised.value, PluginError)
    assert registry.failures == []  # neither plugin is broken, and neither is blamed
    assert type(registry.domain("toy-plugin:toy")) is Genuine
    assert type(registry.domain("acme-plugin:toy")) is Impostor
    assert type(registry.domain("Toy_Plugin:toy")) is Genuine  # package names compare as pip compares them
    assert type(registry.domain("toys:toy")) is Genuine  # or the plugin (entry-point) name
    assert sorted(registry.domains()) == ["acme-plugin:toy", "toy-plugin:toy"]
    assert "toy" in registry.domains() and "nope" not in registry.domains()
    with pytest.raises(UnknownName, match=r"no domain 'toy' from a package or plugin called 'nobody'; it is "
                                          r"provided by 'acme-plugin:toy' \(plugin 'acme'"):
        registry.domain("nobody:toy")
    assert registry.domain_providers("toy") == [("acme-plugin:toy", Provider("acme", "acme-plugin", "2.0")),
                                                ("toy-plugin:toy", Provider("toys", "toy-plugin", "1.0"))]


def test_a_third_party_domain_named_like_a_builtin_does_not_replace_it() -> None:
    from trajdiff.plugins.timeseries.domain import TimeSeriesDomain

    class FakeSeries(Impostor):
        name = "timeseries"

    registry = Plugins(autoload=False)
    assert registry.register(_plugin(trajdiff_domains=lambda: [FakeSeries()]), "acme", "acme-plugin", "2.0")
    with pytest.raises(AmbiguousName, match=r"plugin 'timeseries' \(package trajdiff .*\) and plugin 'acme' "
                                            r"\(package acme-plugin 2.0\); pick one as 'trajdiff:timeseries' or "
                                            r"'acme-plugin:timeseries'"):
        registry.domain("timeseries")
    assert isinstance(registry.domain("trajdiff:timeseries"), TimeSeriesDomain)
    assert type(registry.domain("acme-plugin:timeseries")) is FakeSeries
    assert not [f for f in registry.failures if f.plugin in ("timeseries", "acme")]


def test_a_qualified_name_works_without_a_collision_and_owner_names_the_plugin() -> None:
    registry = _registry(GENUINE)
    domain = registry.domain("toy")
    assert registry.domain("toy-plugin:toy") is domain and list(registry.domains()) == ["toy"]
    assert registry.owner("toy") == ("toys", "toy-plugin", "1.0")
    plugin, package, version = registry.owner(domain.with_encoder(_Scale()))  # a loaded model's own instance
    assert (plugin, package, version) == ("toys", "toy-plugin", "1.0")
    both = _registry(GENUINE, IMPOSTOR)
    assert both.owner("acme-plugin:toy").package == "acme-plugin"
    assert both.owner(both.domain("acme-plugin:toy").with_encoder(_Scale())).package == "acme-plugin"
    with pytest.raises(AmbiguousName):
        both.owner("toy")
    with pytest.raises(PluginError, match="no domain named 'other'"):
        both.owner("other")


def test_colliding_cost_names_are_kept_from_both_plugins_and_picked_by_package() -> None:
    own_twin = lambda x: x.abs().sum(dim=(1, 2))  # noqa: E731
    extra = lambda x: x.pow(2).sum(dim=(1, 2))  # noqa: E731
    registry = _registry(GENUINE, ("extras", _plugin(trajdiff_costs=lambda domain: {"own": own_twin, "extra": extra}),
                                   "extra-costs", "0.3"))
    costs = registry.costs("toy")
    assert sorted(costs) == ["extra", "extra-costs:own", "toy-plugin:own"]
    assert "own" in costs  # so `name in costs` then `costs[name]` (api.sample_futures) reports the collision
    with pytest.raises(AmbiguousName, match=r"cost 'own' of domain 'toy' is provided by plugin 'toys' \(package "
                                            r"toy-plugin 1.0\) and plugin 'extras' \(package extra-costs 0.3\)"):
        costs["own"]
    assert costs["extra-costs:own"] is own_twin and costs["extra"] is extra
    assert callable(costs["toy-plugin:own"]) and costs["toy-plugin:own"] is not own_twin
    # the same through a loaded model's domain instance, and for a domain that is itself picked by package
    assert sorted(registry.costs(registry.domain("toy").with_encoder(_Scale()))) == sorted(costs)
    both = _registry(GENUINE, IMPOSTOR)
    assert sorted(both.costs("acme-plugin:toy")) == ["own"]
    collisions = [str(c) for c in registry.collisions()]
    assert collisions == ["cost 'own' of domain 'toy' is provided by plugin 'toys' (package toy-plugin 1.0) and "
                          "plugin 'extras' (package extra-costs 0.3); pick one as 'toy-plugin:own' or "
                          "'extra-costs:own'"]
    assert registry.failures == []


def test_colliding_data_set_names_are_errors_naming_both_packages() -> None:
    ours = DatasetCard(name="toyset", domain="toy", summary="ours")
    theirs = DatasetCard(name="toyset", domain="toy", summary="theirs")
    registry = _registry(("a", _plugin(trajdiff_datasets=lambda: [ours]), "pkg-a", "1"),
                         ("b", _plugin(trajdiff_datasets=lambda: [theirs]), "pkg-b", "1"))
    with pytest.raises(AmbiguousName, match=r"data set 'toyset' is provided by plugin 'a' \(package pkg-a 1\) and "
                                            r"plugin 'b' \(package pkg-b 1\); pick one as 'pkg-a:toyset' or "
                                            "'pkg-b:toyset'"):
        registry.dataset("toyset")
    assert registry.dataset("pkg-a:toyset") is ours and registry.dataset("pkg-b:toyset") is theirs
    assert sorted(registry.datasets()) == ["pkg-a:toyset", "pkg-b:toyset"]
    with pytest.raises(UnknownName, match=r"no data set named 'other'.*trajdiff datasets list"):
        registry.dataset("other")
    assert [c.packages for c in registry.collisions()] == [["pkg-a", "pkg-b"]]


def test_trajdiff_plugins_lists_collisions(monkeypatch) -> None:
    from typer.testing import CliRunner

    from trajdiff import cli

    registry = _registry(GENUINE, IMPOSTOR)
    monkeypatch.setattr(manager, "get_plugins", lambda: registry)
    result = CliRunner().invoke(cli.app, ["plugins"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "toy-plugin:toy" in out and "[toys from toy-plugin]" in out
    assert "acme-plugin:toy" in out and "[acme from acme-plugin]" in out
    assert "Names several plugins provide" in out
    assert ("domain 'toy' is provided by plugin 'toys' (package toy-plugin 1.0) and plugin 'acme' (package "
            "acme-plugin 2.0); pick one as 'toy-plugin:toy' or 'acme-plugin:toy'") in out
    assert "cost 'own' of domain 'toy-plugin:toy'" not in out  # each domain's own cost is no collision
    assert "Plugins that failed" not in out


# -- a wrong-type hook result is reported once ---------------------------------------------------------------------


def test_a_hook_result_of_the_wrong_type_is_reported_exactly_once() -> None:
    registry = _registry(GENUINE,
                         ("stringy", _plugin(trajdiff_domains=lambda: "toy"), "stringy-plugin", "1"),
                         ("cards", _plugin(trajdiff_datasets=lambda: "toyset"), "cards-plugin", "1"),
                         ("costly", _plugin(trajdiff_costs=lambda domain: "smooth"), "costly-plugin", "1"))
    for _ in range(3):
        assert list(registry.domains()) == ["toy"]
        assert list(registry.datasets()) == []
        assert sorted(registry.costs("toy")) == ["own"]
        registry.contributions()
        registry.collisions()
    reasons = sorted((f.plugin, f.reason) for f in registry.failures)
    assert reasons == [
        ("cards", "trajdiff_datasets must return a list of DatasetCard, not str"),
        ("costly", "trajdiff_costs must return a dict of name -> callable cost, not str"),
        ("stringy", "trajdiff_domains must return a list of Domain instances, not str"),
    ]


# -- a model records its plugin package and version, and loads only with it ---------------------------------------


@pytest.fixture(scope="module")
def genuine_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("identity") / "model"
    api.train("toy", "any", out, steps=2, plugins=_registry(GENUINE), progress=False)
    return out


def _extra(model: Path) -> dict[str, Any]:
    return json.loads((model / "config.json").read_text())["extra"]


def test_a_model_records_the_package_and_version_that_wrote_it(genuine_model: Path, tmp_path: Path) -> None:
    extra = _extra(genuine_model)
    assert (extra["domain"], extra["plugin"], extra["package"], extra["package_version"]) == (
        "toy", "toys", "toy-plugin", "1.0")
    picked = tmp_path / "acme-model"  # a qualified --domain trains with (and records) that package
    api.train("acme-plugin:toy", "any", picked, steps=2, plugins=_registry(GENUINE, IMPOSTOR), progress=False)
    assert (_extra(picked)["package"], _extra(picked)["package_version"]) == ("acme-plugin", "2.0")
    assert type(api.load_model(picked, plugins=_registry(GENUINE, IMPOSTOR)).domain) is Impostor


def test_a_model_refuses_to_load_with_an_impostor_of_its_domain(genuine_model: Path) -> None:
    with pytest.raises(ConfigError, match=r"written with domain 'toy' from package toy-plugin 1.0 \(plugin 'toys'\), "
                                          r"which is not installed; installed plugins that provide 'toy': plugin "
                                          r"'acme' \(package acme-plugin 2.0\)\. Install toy-plugin==1.0"):
        api.load_model(genuine_model, plugins=_registry(IMPOSTOR))
    with pytest.raises(ConfigError, match=r"installed plugins that provide 'toy': none"):
        api.load_model(genuine_model, plugins=Plugins(load_entry_points=False))


def test_a_model_loads_through_its_recorded_package_where_names_collide(genuine_model: Path) -> None:
    both = _registry(IMPOSTOR, GENUINE)
    assert type(api.load_model(genuine_model, plugins=both).domain) is Genuine  # the recorded package, unasked
    loaded = api.load_model(genuine_model, domain="toy-plugin:toy", plugins=both)
    assert type(loaded.domain) is Genuine and loaded.domain.encoder is loaded.encoder
    assert both.owner(loaded.domain) == ("toys", "toy-plugin", "1.0")  # what the CLI names in a plugin's error
    with pytest.raises(ConfigError, match=r"from package toy-plugin 1.0 \(plugin 'toys'\), not from 'acme-plugin'; "
                                          r"load it with --domain toy-plugin:toy"):
        api.load_model(genuine_model, domain="acme-plugin:toy", plugins=both)
    with pytest.raises(ConfigError, match="trained for domain 'toy', not 'other'"):
        api.load_model(genuine_model, domain="toy-plugin:other", plugins=both)


def test_another_version_of_the_recorded_package_loads_with_one_warning(genuine_model: Path) -> None:
    newer = _registry(("toys", _plugin(trajdiff_domains=lambda: [Genuine()]), "toy-plugin", "1.1"))
    with pytest.warns(PluginVersionWarning, match=r"from package toy-plugin 1.0 .* loading it with toy-plugin 1.1"):
        assert type(api.load_model(genuine_model, plugins=newer).domain) is Genuine
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second load of that version pair warns no more
        api.load_model(genuine_model, plugins=newer)
        api.load_model(genuine_model, plugins=_registry(GENUINE))  # the same version: nothing to say


def test_models_written_before_versions_were_recorded_load_as_before(genuine_model: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(genuine_model, old)
    config = json.loads((old / "config.json").read_text())
    del config["extra"]["package_version"]
    (old / "config.json").write_text(json.dumps(config))
    assert type(api.load_model(old, plugins=_registry(IMPOSTOR)).domain) is Impostor  # by name, as before
    assert type(api.load_model(old, plugins=_registry(IMPOSTOR, GENUINE)).domain) is Genuine  # package breaks ties
    assert type(api.load_model(old, domain="acme-plugin:toy", plugins=_registry(IMPOSTOR, GENUINE)).domain) \
        is Impostor
