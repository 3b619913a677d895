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

Identity (`trajdiff.plugins.identity`): every domain, cost and data set is kept with its `Provider`, the
plugin, distribution package and version behind it. Two plugins that claim one name both stay: neither
replaces the other (nor a built-in), the plain name becomes an error that names both packages and the
qualified choices, ``package:name`` picks one wherever a name is accepted (`domain`, `costs`, `dataset`),
and `collisions` lists them for ``trajdiff plugins``. `owner` says which plugin provides a domain, for
messages that blame a plugin; `api.train` records it in the model, and `api.load_model` loads a model
only with the package that wrote it.

Set ``TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the plugins that ship with trajdiff.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from trajdiff.plugins.checks import contract_problem, cost_table_problem, safe_call
from trajdiff.plugins.identity import (
    AmbiguousName,
    Choices,
    Collision,
    Entry,
    PluginError,
    Provider,
    UnknownName,
    installed_version,
)
from trajdiff.plugins.spec import (
    ENTRY_POINT_GROUP,
    PROJECT,
    CommandContext,
    Cost,
    DatasetCard,
    Domain,
    TrajdiffSpec,
)

if TYPE_CHECKING:
    import typer

DISABLE_AUTOLOAD_ENV = "TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PACKAGE = "trajdiff"
HOOKS = ("trajdiff_domains", "trajdiff_costs", "trajdiff_datasets", "trajdiff_commands")
__all__ = ["AmbiguousName", "Collision", "Contribution", "PluginError", "PluginFailure", "PluginVersionWarning",
           "Plugins", "Provider", "UnknownName", "get_plugins", "reset_plugins"]


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
    """One thing a plugin provides, for listings: a domain, a cost or a data set. ``choice`` is the name that
    picks it (``package:name`` where several plugins provide ``name``)."""

    kind: str
    name: str
    plugin: str
    package: str
    summary: str = ""
    domain: str = ""
    choice: str = ""
    version: str = ""


class PluginVersionWarning(UserWarning):
    """A model was written by another version of its domain's plugin package than the one installed."""


class Plugins:
    """The plugins of one process: loaded once, asked per hook, failures kept for reporting."""

    def __init__(self, autoload: bool | None = None, load_entry_points: bool = True) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(TrajdiffSpec)
        self.failures: list[PluginFailure] = []
        self.packages: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        if autoload is None:
            autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")
        self.autoload = autoload
        self._domains: Choices[Domain] | None = None
        self._datasets: Choices[DatasetCard] | None = None
        self._warned: set[str] = set()
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
            self.register(plugin, entry.name, package, entry.dist.version if entry.dist is not None else "")

    def register(self, plugin: object, name: str, package: str = "registered in code",
                 version: str | None = None) -> bool:
        """Registers a plugin object or module as plugin ``name`` of distribution ``package`` at ``version``
        (None: the installed version of ``package``, or "" if it is not installed); returns False (and records
        why) if it is unusable."""
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
        self.versions[name] = installed_version(package) if version is None else version
        self._domains = self._datasets = None
        return True

    def provider(self, plugin: str) -> Provider:
        """The plugin, its package and the package's version."""
        return Provider(plugin, self.packages.get(plugin, "unknown"), self.versions.get(plugin, ""))

    def _fail(self, plugin: str, package: str, reason: str) -> None:
        failure = PluginFailure(plugin, package, reason)
        if failure not in self.failures:  # hooks are asked again (costs per domain): report each problem once
            self.failures.append(failure)

    def warn_once(self, message: str, key: str | None = None) -> None:
        """Warns ``message`` (a `PluginVersionWarning`) the first time these plugins are told it, or anything
        with the same ``key``."""
        key = message if key is None else key
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, PluginVersionWarning, stacklevel=3)

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

    def _listed(self, plugin: str, hook: str, value: Any, what: str) -> list[Any]:
        """A hook's list result; anything else is reported once (a string is not a list of its characters)."""
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            self._fail(plugin, self.packages.get(plugin, "unknown"),
                       f"{hook} must return a list of {what}, not {type(value).__name__}")
            return []
        return list(value)

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

    # -- domains -----------------------------------------------------------------------------------

    def domains(self) -> Choices[Domain]:
        """All working domains, keyed by the name that picks each (``package:name`` where names collide);
        the contract is checked once per process. See `Choices` for looking names up."""
        if self._domains is None:
            entries: list[Entry[Domain]] = []
            for plugin, value in self._call("trajdiff_domains"):  # in registration order
                for domain in self._listed(plugin, "trajdiff_domains", value, "Domain instances"):
                    problem = contract_problem(domain)
                    if problem is None and any(e.name == domain.name and e.provider.plugin == plugin for e in entries):
                        problem = f"trajdiff_domains returns two domains named {domain.name!r}"
                    if problem is not None:
                        self._fail(plugin, self.packages.get(plugin, "unknown"), problem)
                        continue
                    entries.append(Entry(domain.name, domain, self.provider(plugin)))
            self._domains = Choices("domain", entries)
        return self._domains

    def domain(self, name: str) -> Domain:
        """The domain called ``name`` (or ``package:name``). A name two plugins provide raises `AmbiguousName`
        with both packages and the qualified choices; an unknown one lists what exists and what failed."""
        return self._domain_entry(name).item

    def _domain_entry(self, name: str) -> Entry[Domain]:
        try:
            return self.domains().pick(name)
        except UnknownName as error:
            message = str(error)
        if self.failures:
            message += ". Plugins that failed to load: " + "; ".join(str(f) for f in self.failures)
        raise UnknownName(message + ". Run `trajdiff plugins` to see what is installed.")

    def owner(self, domain: Domain | str) -> Provider:
        """Who provides a domain: ``(plugin, package, version)`` (a `Provider`; version "" if unknown).

        ``domain`` is a name as `domain` takes it (plain, or ``package:name``) or a Domain instance: one the
        registry holds, or one made from it by `Domain.with_encoder` (a loaded model's). Meant for messages
        that must name the plugin behind a domain, e.g. the command line's one-line report of an exception
        raised inside a domain's methods (its loader, encoder ...): ``plugin 'acme' (package acme-plugin 1.2):
        data.csv: <message>``. Raises `PluginError` when no plugin provides it, `AmbiguousName` for a plain name
        several plugins provide."""
        if isinstance(domain, str):
            return self._domain_entry(domain).provider
        entry = self._owner_entry(domain)
        if entry is None:
            self.domains().pick(domain.name)  # raises: no provider, or several that the instance cannot tell apart
            raise PluginError(f"no plugin provides this {type(domain).__name__} instance of domain {domain.name!r}")
        return entry.provider

    def _owner_entry(self, domain: Domain) -> Entry[Domain] | None:
        named = self.domains().candidates(domain.name)
        for test in (lambda e: e.item is domain, lambda e: type(e.item) is type(domain), lambda e: True):
            found = [entry for entry in named if test(entry)]
            if len(found) == 1:
                return found[0]
        return None

    def domain_plugin(self, name: str) -> str:
        """The plugin (entry-point name) that provides domain ``name``."""
        return self.owner(name).plugin

    def domain_providers(self, name: str) -> list[tuple[str, Provider]]:
        """Every provider of the plain domain ``name``, each with the name that picks it (empty if none)."""
        return self.domains().providers(name)

    # -- costs -------------------------------------------------------------------------------------

    def costs(self, domain: Domain | str) -> Choices[Cost]:
        """The domain's own costs plus those any plugin adds to it through ``trajdiff_costs``, keyed as `domains`
        keys domains: a cost name two plugins provide is kept from both and picked as ``package:cost``."""
        entry = self._domain_entry(domain) if isinstance(domain, str) else self._owner_entry(domain)
        instance = entry.item if isinstance(domain, str) and entry is not None else domain
        assert isinstance(instance, Domain)
        return self._costs(instance, entry, self.domains().choice(entry) if entry is not None else instance.name)

    def _costs(self, domain: Domain, owner: Entry[Domain] | None, label: str) -> Choices[Cost]:
        own = owner.provider if owner is not None else Provider(f"domain {domain.name}", "", "")
        entries = [Entry(name, cost, own) for name, cost in (safe_call(domain.costs) or {}).items()]
        for plugin, value in self._call("trajdiff_costs", domain=domain):
            if value is None:
                continue
            problem = cost_table_problem(value)
            if problem is not None:
                self._fail(plugin, self.packages.get(plugin, "unknown"), problem)
                continue
            for name, cost in value.items():
                if any(e.name == name and e.provider.plugin == plugin for e in entries):
                    self._fail(plugin, self.packages.get(plugin, "unknown"), f"trajdiff_costs adds cost {name!r} to "
                               f"domain {label!r}, which the same plugin already provides")
                    continue
                entries.append(Entry(name, cost, self.provider(plugin)))
        return Choices("cost", entries, scope=f" of domain {label!r}")

    def _all_costs(self) -> list[tuple[str, Choices[Cost]]]:
        return [(label, self._costs(entry.item, entry, label)) for label, entry in self.domains().entries()]

    def cost_contributions(self) -> list[Contribution]:
        return [_row("cost", choice, entry, domain=label)
                for label, costs in self._all_costs() for choice, entry in costs.entries()]

    # -- data sets ---------------------------------------------------------------------------------

    def datasets(self) -> Choices[DatasetCard]:
        """All data set cards, keyed as `domains` keys domains."""
        if self._datasets is None:
            entries: list[Entry[DatasetCard]] = []
            for plugin, value in self._call("trajdiff_datasets"):
                for card in self._listed(plugin, "trajdiff_datasets", value, "DatasetCard"):
                    if not isinstance(card, DatasetCard):
                        problem = f"trajdiff_datasets returned {type(card).__name__}, not a DatasetCard"
                    elif any(e.name == card.name and e.provider.plugin == plugin for e in entries):
                        problem = f"trajdiff_datasets returns two data sets named {card.name!r}"
                    else:
                        entries.append(Entry(card.name, card, self.provider(plugin)))
                        continue
                    self._fail(plugin, self.packages.get(plugin, "unknown"), problem)
            self._datasets = Choices("data set", entries)
        return self._datasets

    def dataset(self, name: str) -> DatasetCard:
        """The data set card called ``name`` (or ``package:name``); errors as `domain`'s."""
        try:
            return self.datasets()[name]
        except UnknownName as error:
            raise UnknownName(f"{error} (run `trajdiff datasets list`)") from None

    # -- listings ----------------------------------------------------------------------------------

    def collisions(self) -> list[Collision]:
        """Every name that several plugins provide: domains, costs (per domain) and data sets. Each names the
        providers' packages and the ``package:name`` that picks each; none of them replaces another."""
        found = self.domains().collisions()
        for _, costs in self._all_costs():
            found += costs.collisions()
        return found + self.datasets().collisions()

    def contributions(self) -> list[Contribution]:
        """Everything the plugins provide, with the plugin and package each comes from."""
        rows = [_row("domain", choice, entry, entry.item.summary, choice)
                for choice, entry in sorted(self.domains().entries(), key=lambda pair: pair[0])]
        rows += self.cost_contributions()
        rows += [_row("dataset", choice, entry, entry.item.summary, entry.item.domain)
                 for choice, entry in sorted(self.datasets().entries(), key=lambda pair: pair[0])]
        return rows


def _row(kind: str, choice: str, entry: Entry[Any], summary: str = "", domain: str = "") -> Contribution:
    plugin, package, version = entry.provider
    return Contribution(kind, entry.name, plugin, package, summary, domain, choice, version)


@functools.lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    """The process's plugins, loaded on first use (the only global state in trajdiff)."""
    return Plugins()


def reset_plugins() -> None:
    """Forgets the loaded plugins (tests, or after installing a plugin in a running process)."""
    get_plugins.cache_clear()
