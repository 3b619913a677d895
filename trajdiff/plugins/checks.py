"""Checks of what plugins' hooks return, for the plugin manager: a result that breaks the contract is
reported as the plugin's failure, never raised into the caller."""

from __future__ import annotations

from typing import Any

from trajdiff.plugins.spec import BatchCost, Domain, ModelDefaults, Recipe


def safe_call(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def contract_problem(domain: object) -> str | None:
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


def cost_table_problem(value: object) -> str | None:
    """Why a ``trajdiff_costs`` result is not a dict of name -> cost (a callable or a `BatchCost`), or None."""
    if not isinstance(value, dict):
        return f"trajdiff_costs must return a dict of name -> callable cost, not {type(value).__name__}"
    bad = [key for key, cost in value.items() if not isinstance(key, str) or not (
        callable(cost) or isinstance(cost, BatchCost))]
    if bad:
        return f"trajdiff_costs must return a dict of name -> callable cost; not a cost: {bad[:3]}"
    return None
