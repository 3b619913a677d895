"""Finding plugins and asking them for domains, costs and data sets.

`Plugins` is a small typed facade over a pluggy PluginManager (one method per hook). Plugins come
from one entry-point group, ``trajdiff.plugins``, for built-in and third-party packages alike.
Each plugin is loaded and called on its own: a plugin that fails to import, registers a hook that
does not exist, raises, or returns something that breaks the contract is recorded in
``failures`` with its name and the reason, and every other plugin keeps working.

Set ``TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the plugins that ship with trajdiff.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from trajdiff.errors import TrajdiffError
from trajdiff.plugins.spec import (
    ENTRY_POINT_GROUP,
    PROJECT,
    Cost,
    DatasetCard,
    Domain,
    ModelDefaults,
    Recipe,
    TrajdiffSpec,
)

DISABLE_AUTOLOAD_ENV = "TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PACKAGE = "trajdiff"
HOOKS = ("trajdiff_domains", "trajdiff_costs", "trajdiff_datasets")


class PluginError(TrajdiffError, LookupError):
    """A domain, cost or data set was asked for that no working plugin provides."""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    plugin: str
    package: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} (package {self.package}): {self.reason}"


@dataclass(frozen=True)
class Contribution:
    """One thing a plugin provides, for listings: a domain, a cost or a data set."""

    kind: str
    name: str
    plugin: str
    package: str
    summary: str = ""
    domain: str = ""


class Plugins:
    """The plugins of one process: loaded once, asked per hook, failures kept for reporting."""

    def __init__(self, autoload: bool | None = None, load_entry_points: bool = True) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(TrajdiffSpec)
        self.failures: list[PluginFailure] = []
        self.packages: dict[str, str] = {}
        if autoload is None:
            autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")
        self.autoload = autoload
        self._domains: dict[str, Domain] | None = None
        self._domain_plugin: dict[str, str] = {}
        if load_entry_points:
            self._load_entry_points()

    # -- loading -----------------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            package = entry.dist.name if entry.dist is not None else "unknown"
            if not self.autoload and package != BUILTIN_PACKAGE:
                continue
            try:
                plugin = entry.load()
            except Exception as exc:  # any import-time failure is the plugin's, not ours
                self._fail(entry.name, package, f"failed to import {entry.value}: {type(exc).__name__}: {exc}")
                continue
            self.register(plugin, entry.name, package)

    def register(self, plugin: object, name: str, package: str = "registered in code") -> bool:
        """Registers a plugin object or module; returns False (and records why) if it is unusable."""
        if name in self.packages:
            self._fail(name, package, f"another plugin named {name!r} (package {self.packages[name]}) "
                                      "is already registered; rename one entry point")
            return False
        unknown = [attr for attr in dir(plugin) if attr.startswith("trajdiff_") and attr not in HOOKS
                   and callable(getattr(plugin, attr, None))]
        if unknown:
            self._fail(name, package, f"defines {unknown}, which are not trajdiff hooks; known hooks: {list(HOOKS)}")
            return False
        try:
            self.manager.register(plugin, name=name)
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self._fail(name, package, f"does not match the hook specifications: {exc}")
            return False
        self.packages[name] = package
        self._domains = None
        return True

    def _fail(self, plugin: str, package: str, reason: str) -> None:
        self.failures.append(PluginFailure(plugin, package, reason))

    # -- calling hooks one plugin at a time ---------------------------------------------------------

    def _call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        results: list[tuple[str, Any]] = []
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            try:
                value = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:
                self._fail(impl.plugin_name, self.packages.get(impl.plugin_name, "unknown"),
                           f"{hook} raised {type(exc).__name__}: {exc}")
                continue
            results.append((impl.plugin_name, value))
        return results

    def domains(self) -> dict[str, Domain]:
        """All working domains by name (the contract is checked once per process)."""
        if self._domains is None:
            found: dict[str, Domain] = {}
            for plugin, value in self._call("trajdiff_domains"):  # in registration order
                package = self.packages.get(plugin, "unknown")
                for domain in value or []:
                    problem = _contract_problem(domain)
                    if problem is None and domain.name in found:
                        problem = (f"domain name {domain.name!r} is already provided by plugin "
                                   f"{self._domain_plugin[domain.name]!r}")
                    if problem is not None:
                        self._fail(plugin, package, problem)
                        continue
                    found[domain.name] = domain
                    self._domain_plugin[domain.name] = plugin
            self._domains = found
        return dict(self._domains)

    def domain(self, name: str) -> Domain:
        """The domain called ``name``; a clear error lists what exists and what failed to load."""
        domains = self.domains()
        if name in domains:
            return domains[name]
        message = f"no domain named {name!r}; available: {sorted(domains) or 'none'}"
        if self.failures:
            message += ". Plugins that failed to load: " + "; ".join(str(f) for f in self.failures)
        raise PluginError(message + ". Run `trajdiff plugins` to see what is installed.")

    def domain_plugin(self, name: str) -> str:
        self.domains()
        return self._domain_plugin[name]

    def costs(self, domain: Domain | str) -> dict[str, Cost]:
        """The domain's own costs plus those any plugin adds to it through ``trajdiff_costs``."""
        domain = self.domain(domain) if isinstance(domain, str) else domain
        costs = dict(_safe_call(domain.costs) or {})
        for plugin, value in self._call("trajdiff_costs", domain=domain):
            if value is None:
                continue
            if not isinstance(value, dict) or not all(isinstance(k, str) and callable(v) for k, v in value.items()):
                self._fail(plugin, self.packages.get(plugin, "unknown"),
                           "trajdiff_costs must return a dict of name -> callable cost")
                continue
            costs.update(value)
        return costs

    def cost_contributions(self) -> list[Contribution]:
        rows = []
        for name, domain in self.domains().items():
            own_plugin = self._domain_plugin[name]
            for cost in sorted(_safe_call(domain.costs) or {}):
                rows.append(Contribution("cost", cost, own_plugin, self.packages.get(own_plugin, ""), domain=name))
            for plugin, value in self._call("trajdiff_costs", domain=domain):
                for cost in sorted(value or {}) if isinstance(value, dict) else []:
                    rows.append(Contribution("cost", cost, plugin, self.packages.get(plugin, ""), domain=name))
        return rows

    def datasets(self) -> dict[str, DatasetCard]:
        """All data set cards by name."""
        cards: dict[str, DatasetCard] = {}
        self._dataset_plugin: dict[str, str] = {}
        for plugin, value in self._call("trajdiff_datasets"):
            for card in value or []:
                if not isinstance(card, DatasetCard):
                    self._fail(plugin, self.packages.get(plugin, "unknown"),
                               f"trajdiff_datasets returned {type(card).__name__}, not a DatasetCard")
                    continue
                cards[card.name] = card
                self._dataset_plugin[card.name] = plugin
        return cards

    def dataset(self, name: str) -> DatasetCard:
        cards = self.datasets()
        if name not in cards:
            raise PluginError(f"no data set named {name!r}; available: {sorted(cards) or 'none'} "
                              "(run `trajdiff datasets list`)")
        return cards[name]

    def contributions(self) -> list[Contribution]:
        """Everything the plugins provide, with the plugin and package each comes from."""
        rows = [Contribution("domain", name, self._domain_plugin[name],
                             self.packages.get(self._domain_plugin[name], ""), domain.summary, name)
                for name, domain in sorted(self.domains().items())]
        rows += self.cost_contributions()
        cards = self.datasets()
        rows += [Contribution("dataset", name, self._dataset_plugin[name],
                              self.packages.get(self._dataset_plugin[name], ""), card.summary, card.domain)
                 for name, card in sorted(cards.items())]
        return rows


def _safe_call(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _contract_problem(domain: object) -> str | None:
    """Why ``domain`` breaks the Domain contract, or None if it keeps it."""
    if not isinstance(domain, Domain):
        return f"trajdiff_domains returned {type(domain).__name__}, which is not a trajdiff Domain subclass"
    if not isinstance(domain.name, str) or not domain.name or not domain.name.replace("_", "").replace(
            "-", "").isalnum():
        return f"domain {domain!r} needs a non-empty name of letters, digits, '-' or '_'"
    try:
        defaults = domain.defaults()
    except Exception as exc:
        return f"domain {domain.name!r}: defaults() raised {type(exc).__name__}: {exc}"
    if not isinstance(defaults, ModelDefaults):
        return f"domain {domain.name!r}: defaults() must return ModelDefaults, got {type(defaults).__name__}"
    if defaults.history < 0 or defaults.horizon < 1:
        return f"domain {domain.name!r}: defaults() needs history >= 0 and horizon >= 1"
    for method in ("costs", "constraints", "metrics", "recipes"):
        try:
            value = getattr(domain, method)()
        except Exception as exc:
            return f"domain {domain.name!r}: {method}() raised {type(exc).__name__}: {exc}"
        if not isinstance(value, dict):
            return f"domain {domain.name!r}: {method}() must return a dict, got {type(value).__name__}"
        if method == "recipes" and not all(isinstance(recipe, Recipe) for recipe in value.values()):
            return f"domain {domain.name!r}: recipes() must map names to trajdiff Recipe objects"
    return None


@functools.lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    """The process's plugins, loaded on first use (the only global state in trajdiff)."""
    return Plugins()


def reset_plugins() -> None:
    """Forgets the loaded plugins (tests, or after installing a plugin in a running process)."""
    get_plugins.cache_clear()
