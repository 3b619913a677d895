"""The plugin system: every hook, broken plugins isolated by name, autoload switch, entry points."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from trajdiff.core.data import Episodes
from trajdiff.plugins import spec
from trajdiff.plugins.manager import DISABLE_AUTOLOAD_ENV, PluginError, Plugins
from trajdiff.plugins.spec import DatasetCard, Domain, Encoder, ModelDefaults, hookimpl


class _Identity(Encoder):
    dim = 1  # type: ignore[assignment]

    def fit(self, episodes: Episodes) -> _Identity:
        return self

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        return window, {}

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        return x

    def state_dict(self) -> dict[str, Any]:
        return {}


class ToyDomain(Domain):
    name = "toy"
    summary = "a toy domain for tests"

    def load(self, source: Any, **options: Any) -> Episodes:
        return Episodes([np.zeros((5, 1))], ["v"])

    def make_encoder(self, **options: Any) -> Encoder:
        return _Identity()

    def encoder_from_state(self, state: dict[str, Any]) -> Encoder:
        return _Identity()

    def defaults(self) -> ModelDefaults:
        return ModelDefaults(history=2, horizon=3, network={"kind": "unet"})

    def costs(self) -> dict[str, spec.Cost]:
        return {"own": lambda x: x.sum(dim=(1, 2))}


def _plugin(**hooks: Any) -> SimpleNamespace:
    return SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def _registry(*plugins: tuple[str, object]) -> Plugins:
    registry = Plugins(load_entry_points=False)
    for name, plugin in plugins:
        registry.register(plugin, name)
    return registry


# -- one test per hook (test_every_hook_has_a_test enforces it) ---------------------------------------------------


def test_hook_trajdiff_domains() -> None:
    registry = _registry(("toys", _plugin(trajdiff_domains=lambda: [ToyDomain()])))
    assert list(registry.domains()) == ["toy"]
    assert registry.domain("toy").summary == "a toy domain for tests"
    assert registry.domain_plugin("toy") == "toys"
    with pytest.raises(PluginError, match=r"no domain named 'nope'; available: \['toy'\]"):
        registry.domain("nope")


def test_hook_trajdiff_costs() -> None:
    def extra_costs(domain: Domain) -> dict[str, spec.Cost]:
        return {"extra": lambda x: x.abs().sum(dim=(1, 2))} if domain.name == "toy" else {}

    registry = _registry(("toys", _plugin(trajdiff_domains=lambda: [ToyDomain()])),
                         ("extras", _plugin(trajdiff_costs=extra_costs)))
    costs = registry.costs("toy")
    assert sorted(costs) == ["extra", "own"]
    listed = {(row.name, row.plugin, row.domain) for row in registry.contributions() if row.kind == "cost"}
    assert listed == {("own", "toys", "toy"), ("extra", "extras", "toy")}


def test_hook_trajdiff_datasets() -> None:
    card = DatasetCard(name="toyset", domain="toy", summary="zeros", make=lambda path: Path(path))
    registry = _registry(("toys", _plugin(trajdiff_datasets=lambda: [card])))
    assert registry.datasets() == {"toyset": card}
    assert registry.dataset("toyset").make("x.csv") == Path("x.csv")
    with pytest.raises(PluginError, match="no data set named 'other'"):
        registry.dataset("other")


def _say_hello(app: Any, cli: spec.CommandContext) -> None:
    import typer

    @app.command()
    def hello(name: str = typer.Option("world", help="Whom to greet."),
              model: Path = typer.Option(None, help="A model to load first.")) -> None:
        """Greet someone (a third-party plugin's command)."""
        from trajdiff.errors import TrajdiffError

        if model is not None:
            try:
                cli.load_model(model)
            except TrajdiffError as error:
                cli.fail(error)
        typer.echo(f"hello {name}")


def _app_with_plugin_commands(registry: Plugins) -> tuple[Any, dict[str, str]]:
    """A fresh Typer app with one built-in command (so it is a group), plus what the plugins add."""
    import typer

    from trajdiff import cli

    app = typer.Typer()
    app.command()(cli.version)
    return app, cli.add_plugin_commands(app, registry)


def test_hook_trajdiff_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    registry = _registry(("greeter", _plugin(trajdiff_commands=_say_hello)),
                         ("app-only", _plugin(trajdiff_commands=lambda app: app.command("bye")(lambda: print("bye")))))
    app, added = _app_with_plugin_commands(registry)
    assert added == {"hello": "greeter", "bye": "app-only"} and not registry.failures
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"])
    assert listing.exit_code == 0 and "hello" in listing.output and "Greet someone" in listing.output
    assert "bye" in listing.output and "version" in listing.output
    result = runner.invoke(app, ["hello", "--name", "trajdiff"])
    assert result.exit_code == 0 and result.output == "hello trajdiff\n"
    assert runner.invoke(app, ["bye"]).output == "bye\n"
    # the context's loader and error reporter behave like the built-in commands' own
    missing = runner.invoke(app, ["hello", "--model", str(tmp_path / "no-model")])
    assert missing.exit_code == 2 and "error: " in missing.output and "no-model" in missing.output


def test_a_plugin_whose_commands_hook_raises_adds_nothing_and_the_others_still_work() -> None:
    from typer.testing import CliRunner

    def half_then_raise(app: Any) -> None:
        app.command("half")(lambda: print("half"))
        raise RuntimeError("no commands today")

    def clashing(app: Any) -> None:
        app.command("version")(lambda: print("mine"))
        app.command("extra")(lambda: print("extra"))

    registry = _registry(("broken", _plugin(trajdiff_commands=half_then_raise)),
                         ("greeter", _plugin(trajdiff_commands=_say_hello)),
                         ("clash", _plugin(trajdiff_commands=clashing)),
                         ("again", _plugin(trajdiff_commands=lambda app, cli: _say_hello(app, cli))))
    app, added = _app_with_plugin_commands(registry)
    assert added == {"hello": "greeter"}
    failures = {f.plugin: f.reason for f in registry.failures}
    assert sorted(failures) == ["again", "broken", "clash"]
    assert failures["broken"] == "trajdiff_commands raised RuntimeError: no commands today"
    assert "'version' (already provided by the trajdiff command line)" in failures["clash"]
    assert "'hello' (already provided by plugin 'greeter')" in failures["again"]
    runner = CliRunner()
    assert runner.invoke(app, ["hello"]).output == "hello world\n"
    assert runner.invoke(app, ["version"]).exit_code == 0
    for absent in ("half", "extra"):  # a failing plugin adds none of its commands
        assert runner.invoke(app, [absent]).exit_code == 2


def test_builtin_plugins_add_plan_fit_value_and_sample() -> None:
    import typer.main

    from trajdiff import cli

    commands = typer.main.get_group(cli.app).commands
    assert {"plan", "sample", "train", "forecast"} <= set(commands)
    app, added = _app_with_plugin_commands(Plugins(autoload=False))
    assert added == {"plan": "rl", "fit-value": "rl", "fit-inverse": "rl", "sample": "motion"}


def test_every_hook_has_a_test() -> None:
    """Adding a hook specification without a `test_hook_<name>` test here fails this test."""
    hooks = [name for name, _ in inspect.getmembers(spec.TrajdiffSpec, inspect.isfunction)
             if name.startswith("trajdiff_")]
    source = Path(__file__).read_text()
    missing = [name for name in hooks if not re.search(rf"^def test_hook_{name}\(", source, re.M)]
    assert hooks and missing == []


# -- broken plugins are reported by name and never take the others down -------------------------------------------


class Nameless(ToyDomain):
    name = ""


class BadDefaults(ToyDomain):
    name = "bad-defaults"

    def defaults(self) -> ModelDefaults:
        raise RuntimeError("forgot to configure")


@pytest.mark.parametrize(
    ("plugin", "reason"),
    [
        (_plugin(trajdiff_domains=lambda: [object()]), "not a trajdiff Domain subclass"),
        (_plugin(trajdiff_domains=lambda: [Nameless()]), "needs a non-empty name"),
        (_plugin(trajdiff_domains=lambda: [BadDefaults()]), "defaults\\(\\) raised RuntimeError: forgot to configure"),
        (_plugin(trajdiff_domains=lambda: 1 / 0), "trajdiff_domains raised ZeroDivisionError"),
        (_plugin(trajdiff_domains=lambda: "toy"), "must return a list of Domain instances, not str"),
        (_plugin(trajdiff_domains=lambda: [ToyDomain(), ToyDomain()]), "returns two domains named 'toy'"),
    ],
)
def test_a_broken_domain_plugin_is_reported_and_the_others_keep_working(plugin, reason) -> None:
    registry = _registry(("good", _plugin(trajdiff_domains=lambda: [ToyDomain()])), ("broken", plugin))
    good = registry.domain("good:toy")
    assert list(registry.domains()) in (["toy"], ["good:toy", "broken:toy"])  # the last one: its first toy is fine
    assert registry.owner(good).plugin == "good"
    registry.contributions()  # asks every hook again: nothing is reported twice
    assert [f.plugin for f in registry.failures] == ["broken"]
    assert re.search(reason, registry.failures[0].reason)


def test_unknown_hooks_and_bad_signatures_are_rejected_at_registration() -> None:
    registry = Plugins(load_entry_points=False)
    assert not registry.register(_plugin(trajdiff_domain=lambda: []), "typo")
    assert "not trajdiff hooks" in registry.failures[-1].reason
    assert not registry.register(_plugin(trajdiff_costs=lambda dom: {}), "wrong-args")
    assert "does not match the hook specifications" in registry.failures[-1].reason
    assert registry.register(_plugin(trajdiff_domains=lambda: [ToyDomain()]), "good")
    assert list(registry.domains()) == ["toy"]


def test_bad_cost_and_dataset_results_are_reported() -> None:
    registry = _registry(("toys", _plugin(trajdiff_domains=lambda: [ToyDomain()])),
                         ("costly", _plugin(trajdiff_costs=lambda domain: ["not", "a", "dict"])),
                         ("cards", _plugin(trajdiff_datasets=lambda: ["not a card"])))
    assert sorted(registry.costs("toy")) == ["own"]
    assert registry.datasets() == {}
    assert {f.plugin for f in registry.failures} == {"costly", "cards"}


def _fake_distribution(root: Path, name: str, entry: str) -> None:
    """A real installed distribution as importlib.metadata sees one: a dist-info folder on sys.path."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[trajdiff.plugins]\n{entry}\n")


def test_entry_points_load_third_party_plugins_and_report_import_failures(tmp_path, monkeypatch) -> None:
    (tmp_path / "toy_plugin.py").write_text(textwrap.dedent("""
        from tests_toy_support import ToyDomain
        from trajdiff.plugins.spec import hookimpl

        @hookimpl
        def trajdiff_domains():
            return [ToyDomain()]
    """))
    (tmp_path / "tests_toy_support.py").write_text(
        "import sys\nToyDomain = sys.modules['test_plugins'].ToyDomain if 'test_plugins' in sys.modules "
        "else sys.modules['tests.test_plugins'].ToyDomain\n")
    _fake_distribution(tmp_path, "toy-plugin", "toy = toy_plugin")
    _fake_distribution(tmp_path, "broken-plugin", "broken = no_such_module_anywhere")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Plugins(autoload=True)
    assert "toy" in registry.domains()
    assert registry.packages["toy"] == "toy-plugin"
    broken = [f for f in registry.failures if f.plugin == "broken"]
    assert broken and broken[0].package == "broken-plugin"
    assert "failed to import no_such_module_anywhere" in broken[0].reason

    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    builtin_only = Plugins()
    assert "toy" not in builtin_only.domains() and not builtin_only.failures
    assert set(builtin_only.packages.values()) <= {"trajdiff"}


def test_builtin_domains_come_through_the_entry_point_group() -> None:
    from importlib.metadata import entry_points

    names = {entry.name: entry.dist.name for entry in entry_points(group=spec.ENTRY_POINT_GROUP)
             if entry.dist is not None and entry.dist.name == "trajdiff"}
    assert "timeseries" in names
    registry = Plugins(autoload=False)
    assert "timeseries" in registry.domains()
    assert registry.packages[registry.domain_plugin("timeseries")] == "trajdiff"


def test_unknown_domain_error_mentions_failed_plugins() -> None:
    registry = _registry(("broken", _plugin(trajdiff_domains=lambda: 1 / 0)))
    with pytest.raises(PluginError, match=r"failed to load: plugin 'broken'.*trajdiff plugins"):
        registry.domain("toy")


assert sys.version_info >= (3, 11)


def test_a_domain_without_recipes_says_so_when_one_is_asked_for(tmp_path: Path) -> None:
    from trajdiff import api
    from trajdiff.errors import ConfigError

    registry = _registry(("toys", _plugin(trajdiff_domains=lambda: [ToyDomain()])))
    with pytest.raises(ConfigError, match=r"domain 'toy' has no training recipe 'fast'; its recipes: none"):
        api.train("toy", "anything", tmp_path / "m", recipe="fast", plugins=registry)
    assert not (tmp_path / "m").exists()
