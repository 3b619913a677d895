"""Who provides what: names that several plugins claim, and picking one of them as ``package:name``.

Every domain, cost and data set a plugin contributes is kept as an `Entry`: its name, the thing itself and
its `Provider` (plugin, distribution package, version). Two plugins that contribute the same name do not
replace one another: both are kept, the plain name becomes ambiguous, and `Choices` answers it with an
error that names both packages and the qualified choices (``trajdiff:timeseries``,
``acme-plugin:timeseries``). A qualifier is a distribution package name (compared as pip does: case and
``-``/``_``/``.`` do not matter) or, where one package has two plugins that clash, a plugin (entry-point)
name; a qualified name also works where nothing collides. Domain names cannot contain ``:``; a cost or data
set name that does is matched whole first.

This module knows nothing of pluggy or of the `Plugins` facade (`trajdiff.plugins.manager`), which builds
the entries and turns them into `Choices`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Generic, NamedTuple, TypeVar

from trajdiff.errors import TrajdiffError

T = TypeVar("T")


class PluginError(TrajdiffError, LookupError):
    """A domain, cost or data set was asked for that no working plugin provides, or that several provide."""


class UnknownName(PluginError, KeyError):
    """No plugin provides the name asked for (a `KeyError` too, so `Choices` is a well-behaved mapping)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AmbiguousName(PluginError):
    """Several plugins provide the name asked for and it was given without ``package:``."""


class Provider(NamedTuple):
    """The plugin (entry-point name), distribution package and its version that provide something.
    ``version`` is "" where it is unknown (a plugin registered in code from no installed package)."""

    plugin: str
    package: str
    version: str = ""

    def __str__(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"plugin {self.plugin!r} (package {self.package}{version})"


def installed_version(package: str) -> str:
    """The installed version of distribution ``package``, or "" if it is not installed."""
    try:
        return version(package)
    except (PackageNotFoundError, ValueError):
        return ""


def normalize(package: str) -> str:
    """A distribution name as pip compares them (PEP 503): lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", package).lower()


def same_package(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and normalize(a) == normalize(b)


class Entry(NamedTuple, Generic[T]):
    """One thing a plugin contributes, under ``name``."""

    name: str
    item: T
    provider: Provider


@dataclass(frozen=True)
class Collision:
    """A name that several plugins provide: ``choices`` pairs each provider with the qualified name that picks it."""

    kind: str
    name: str
    choices: tuple[tuple[str, Provider], ...]
    scope: str = ""  # e.g. " for domain 'toy'" (costs belong to a domain)

    @property
    def packages(self) -> list[str]:
        return [provider.package for _, provider in self.choices]

    def __str__(self) -> str:
        who = " and ".join(str(provider) for _, provider in self.choices)
        picks = " or ".join(repr(choice) for choice, _ in self.choices)
        return f"{self.kind} {self.name!r}{self.scope} is provided by {who}; pick one as {picks}"


def _choice(entry: Entry[T], group: list[Entry[T]]) -> str:
    """The name that picks ``entry`` among the entries of one name: the plain name where it is alone, else
    ``package:name``, or ``plugin:name`` where the package does not tell the entries apart."""
    if len(group) == 1:
        return entry.name
    package = entry.provider.package
    if package and not re.search(r"\s|:", package) and sum(
            same_package(other.provider.package, package) for other in group) == 1:
        return f"{package}:{entry.name}"
    return f"{entry.provider.plugin}:{entry.name}"


class Choices(Mapping[str, T]):
    """Named things from several plugins, as a read-only mapping.

    Iterating gives the names that each pick exactly one thing: the plain name where one plugin provides it,
    ``package:name`` for each provider of a name several provide. Looking up accepts those, a qualified name
    for anything, and a plain name; a plain name several plugins provide is *in* the mapping, but looking it
    up raises `AmbiguousName` (a `PluginError`) naming every provider and choice, so a caller that checks
    ``name in choices`` before ``choices[name]`` reports the collision rather than a missing name. A missing
    name raises `UnknownName` (a `KeyError` and a `PluginError`)."""

    def __init__(self, kind: str, entries: Iterable[Entry[T]], scope: str = "") -> None:
        self.kind = kind
        self.scope = scope
        self._groups: dict[str, list[Entry[T]]] = {}
        for entry in entries:
            self._groups.setdefault(entry.name, []).append(entry)
        self._picks = {_choice(entry, group): entry for group in self._groups.values() for entry in group}

    # -- the mapping ---------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        return iter(self._picks)

    def __len__(self) -> int:
        return len(self._picks)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self.pick(key)
        except AmbiguousName:
            return True
        except UnknownName:
            return False
        return True

    def __getitem__(self, key: str) -> T:
        return self.pick(key).item

    def __repr__(self) -> str:
        return f"Choices({self.kind}: {list(self)})"

    # -- picking -------------------------------------------------------------------------------------------------

    def candidates(self, key: str) -> list[Entry[T]]:
        """The entries ``key`` may mean: all of a plain name's providers, or those a qualifier selects."""
        if key in self._groups:
            return list(self._groups[key])
        qualifier, colon, name = key.partition(":")
        if not colon:
            return []
        group = self._groups.get(name, [])
        by_package = [entry for entry in group if same_package(entry.provider.package, qualifier)]
        return by_package or [entry for entry in group if entry.provider.plugin == qualifier]

    def pick(self, key: str) -> Entry[T]:
        """The one entry ``key`` names; `AmbiguousName` or `UnknownName` (with the choices) otherwise."""
        if key in self._picks:
            return self._picks[key]
        found = self.candidates(key)
        if len(found) == 1:
            return found[0]
        name = key.partition(":")[2] if key not in self._groups and ":" in key else key
        if found:
            choices = [(self.choice(entry), entry.provider) for entry in found]
            raise AmbiguousName(f"{Collision(self.kind, name, tuple(choices), self.scope)} (a qualified "
                                f"PACKAGE:NAME works wherever a {self.kind} name is accepted)")
        if name != key and name in self._groups:
            raise UnknownName(f"no {self.kind} {name!r}{self.scope} from a package or plugin called "
                              f"{key.partition(':')[0]!r}; it is provided by "
                              + ", ".join(f"{self.choice(e)!r} ({e.provider})" for e in self._groups[name]))
        raise UnknownName(f"no {self.kind} named {key!r}{self.scope}; available: {sorted(self) or 'none'}")

    def choice(self, entry: Entry[T]) -> str:
        """The name that picks ``entry`` (plain, or qualified where its name collides)."""
        return _choice(entry, self._groups[entry.name])

    def providers(self, name: str) -> list[tuple[str, Provider]]:
        """Every provider of the plain ``name``, each with the name that picks it."""
        return [(self.choice(entry), entry.provider) for entry in self._groups.get(name, [])]

    def entries(self) -> list[tuple[str, Entry[T]]]:
        """(picking name, entry) for everything, in the order the plugins were asked."""
        return [(self.choice(entry), entry) for group in self._groups.values() for entry in group]

    def collisions(self) -> list[Collision]:
        return [Collision(self.kind, name, tuple(self.providers(name)), self.scope)
                for name, group in self._groups.items() if len(group) > 1]
