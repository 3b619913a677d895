"""Finding plugins and asking them for domains, costs, data sets and commands.

`Plugins` is a small typed facade over a pluggy PluginManager (one method per hook). Plugins come
from one entry-point group, ``trajdiff.plugins``, for built-in and third-party packages alike.
Each plugin is loaded and called on its own: a plugin that fails to import, registers a hook that
does not exist, raises, or returns something that breaks the contract is recorded in
``failures`` with its name and the reason, and every other plugin keeps working.

Why the facade calls each plugin's hook implementation itself instead of ``pm.hook.<name>()``:
pluggy's hook call runs every implementation in one loop, and the first exception ends the call:
the results of the plugins already called are lost, those after it are never called, and the
exception does not say which plugin raised. Its results also come back as a bare list, so a result
that breaks the contract cannot be charged to the plugin that returned it. One broken plugin would
take every other plugin down, which DESIGN.md rules out. So pluggy keeps what it does well
(registration, and checking each implementation against its specification when it is registered)
and `Plugins._call` walks ``get_hookimpls()`` in registration order, one plugin at a time, behind
its own ``try``. What that gives up, knowingly: hook wrappers, ``tryfirst``/``trylast``, historic
hooks and pluggy's call tracing do not apply to trajdiff hooks (none of them uses these).

Commands (`trajdiff_commands`): each plugin adds its commands to a Typer app of its own, merged
into the CLI's app only when its hook returns without raising and none of its command names is
taken, so a broken plugin adds nothing and is reported by name. Plugin commands receive a
`CommandContext` with the model loader and the error reporter instead of importing
`trajdiff.api` or `trajdiff.cli`: plugins stay below the api and cli layers with no exception to
the layering rule, and a third-party command loads models exactly as the built-in ones do.

Set ``TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the plugins that ship with trajdiff.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from trajdiff.errors import TrajdiffError
from trajdiff.plugins.spec import (
    ENTRY_POINT_GROUP,
    PROJECT,
    CommandContext,
    Cost,
    DatasetCard,
    Domain,
    ModelDefaults,
    Recipe,
    TrajdiffSpec,
)

if TYPE_CHECKING:
    import typer

DISABLE_AUTOLOAD_ENV = "TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PACKAGE = "trajdiff"
HOOKS = ("trajdiff_domains", "trajdiff_costs", "trajdiff_datasets", "trajdiff_commands")


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
        """Calls ``hook`` on each plugin in turn (not ``pm.hook.<name>()``: see the module docstring);
        returns (plugin name, result) for the plugins whose implementation did not raise."""
        results: list[tuple[str, Any]] = []
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            ok, value = self._call_one(impl, hook, kwargs)
            if ok:
                results.append((impl.plugin_name, value))
        return results

    def _call_one(self, impl: pluggy.HookImpl, hook: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        try:
            return True, impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:
            self._fail(impl.plugin_name, self.packages.get(impl.plugin_name, "unknown"),
                       f"{hook} raised {type(exc).__name__}: {exc}")
            return False, None

    def add_commands(self, app: typer.Typer, cli: CommandContext) -> dict[str, str]:
        """Lets every plugin add commands to ``app`` through ``trajdiff_commands``; returns command name ->
        plugin for the commands added. A plugin's commands go into a Typer app of its own first and join
        ``app`` only if its hook did not raise and none of their names is taken (by the CLI or an earlier
        plugin); otherwise the plugin is reported in ``failures`` and adds nothing."""
        import typer
        import typer.main

        taken = {name: "the trajdiff command line" for name in typer.main.get_group(app).commands}
        added: dict[str, str] = {}
        for impl in self.manager.hook.trajdiff_commands.get_hookimpls():
            plugin = impl.plugin_name
            own = typer.Typer()
            ok, _ = self._call_one(impl, "trajdiff_commands", {"app": own, "cli": cli})
            if not ok:
                continue
            try:
                names = sorted(typer.main.get_group(own).commands)
            except Exception as exc:  # a command typer cannot build (bad annotations, defaults ...)
                self._fail(plugin, self.packages.get(plugin, "unknown"),
                           f"trajdiff_commands added a command typer cannot build: {type(exc).__name__}: {exc}")
                continue
            clashes = [f"{name!r} (already provided by {taken[name]})" for name in names if name in taken]
            if clashes:
                self._fail(plugin, self.packages.get(plugin, "unknown"),
                           f"trajdiff_commands adds command(s) whose names are taken: {', '.join(clashes)}; "
                           "rename them")
                continue
            app.registered_commands.extend(own.registered_commands)
            app.registered_groups.extend(own.registered_groups)
            for name in names:
                taken[name] = f"plugin {plugin!r}"
                added[name] = plugin
        return added

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
