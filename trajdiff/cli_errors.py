"""How a command that fails ends: one line on stderr and an exit status that says whose fault it was.

Exit status: 0 success; 2 the input is wrong (an option, a data file, a model folder: a `TrajdiffError`, an
option the parser refuses, or more memory asked for than the machine has); 3 a plugin's code raised, or trajdiff
itself has a bug (an unexpected exception); 130 interrupted (Ctrl-C).

An exception that is not a `TrajdiffError` is a bug somewhere, never a message for the user to act on, so it is
not passed off as one: it is charged to the third-party plugin whose code is the innermost on its traceback
(``plugin 'NAME' (package PKG VERSION) failed in FILE:LINE``), or else reported as an internal error of trajdiff
(``internal error in FILE:LINE``, to be reported with the ``--debug`` output). ``trajdiff --debug COMMAND`` or
``TRAJDIFF_DEBUG=1`` prints the full traceback before that line. The handling lives in the command group the
``trajdiff`` app is built on (`ReportingGroup`), so the console script, ``python -m trajdiff.cli`` and typer's
test runner all end a command the same way.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import typer
import typer.core

from trajdiff.errors import TrajdiffError

try:  # typer 0.2x carries its own copy of click; older ones use click itself
    from typer._click import exceptions as _parser
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as _parser

USER_ERROR, FAULT, INTERRUPTED = 2, 3, 130
DEBUG_ENV = "TRAJDIFF_DEBUG"
DEBUG_HELP = (f"Print the full traceback of an unexpected error (a plugin's or trajdiff's own); {DEBUG_ENV}=1 "
              "does the same.")
_DEBUG_KEY = "trajdiff.debug"
_PASS_THROUGH = (typer.Exit, typer.Abort, _parser.ClickException)  # exits and usage errors: the parser's
_SHOW_HELP = getattr(_parser, "NoArgsIsHelpError", ())  # a command given no arguments shows its help
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds the trajdiff package


def debug_requested(ctx: typer.Context | None = None) -> bool:
    """Whether ``--debug`` was given to the command of ``ctx`` or ``TRAJDIFF_DEBUG`` is set (1, true or yes)."""
    if ctx is not None and ctx.find_root().meta.get(_DEBUG_KEY):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")


def set_debug(ctx: typer.Context, debug: bool) -> None:
    """Records the ``--debug`` flag for the command that ``ctx`` runs."""
    ctx.find_root().meta[_DEBUG_KEY] = debug


class ReportingGroup(typer.core.TyperGroup):
    """The ``trajdiff`` command group: runs a command and turns what escapes it into one line and an exit status
    (see the module docstring): an option the parser refuses is one line too (exit 2); explicit exits pass
    through unchanged."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _parser.UsageError as error:  # ``trajdiff --bogus``
            _usage_error(error, ctx)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _parser.UsageError as error:  # an option or command the parser refuses: one line, not a box
            _usage_error(error, ctx)
        except _PASS_THROUGH:
            raise
        except TrajdiffError as error:  # a user error a command did not report itself (a plugin's command)
            _echo(f"error: {_one_line(error)}")
            raise typer.Exit(code=USER_ERROR) from None
        except KeyboardInterrupt:
            _echo("interrupted")
            raise typer.Exit(code=INTERRUPTED) from None
        except Exception as error:
            if out_of_memory(error) and not debug_requested(ctx):
                _echo(describe_out_of_memory(error))
                raise typer.Exit(code=USER_ERROR) from None
            if debug_requested(ctx):
                traceback.print_exception(error, file=sys.stderr)
            _echo(describe_fault(error, debug=debug_requested(ctx)))
            raise typer.Exit(code=FAULT) from None


def _usage_error(error: Any, ctx: typer.Context) -> NoReturn:
    """``error: COMMAND: MESSAGE (see `COMMAND --help`)``, exit 2; a command given no arguments shows its help."""
    if isinstance(error, _SHOW_HELP):
        raise error
    sub = getattr(ctx, "invoked_subcommand", None)  # set once the group has found the command it runs
    command = error.ctx.command_path if error.ctx is not None else " ".join([ctx.command_path, *([sub] if sub else [])])
    _echo(f"error: {command}: {_one_line(error.format_message())} (see `{command} --help`)")
    raise typer.Exit(code=USER_ERROR) from None


def describe_fault(error: BaseException, *, debug: bool = False) -> str:
    """The one line for an unexpected exception: the third-party plugin whose frame is innermost on its
    traceback, or trajdiff's own innermost frame as an internal error."""
    what = f"{type(error).__name__}: {_one_line(error)}" if str(error) else type(error).__name__
    frames = [(frame.f_globals.get("__name__", ""), frame.f_code.co_filename, line)
              for frame, line in traceback.walk_tb(error.__traceback__)]
    owners = _plugin_modules()
    for module, filename, line in reversed(frames):
        owner = _owner(module, owners)
        if owner is not None:
            plugin, package, version = owner
            where = _relative(filename, module)
            hint = "" if debug else f" (rerun with --debug or {DEBUG_ENV}=1 for the traceback)"
            return (f"error: plugin {plugin!r} (package {package}{' ' + version if version else ''}) failed in "
                    f"{where}:{line}: {what}{hint}")
    own = [(module, filename, line) for module, filename, line in frames if module.split(".")[0] == "trajdiff"]
    module, filename, line = (own or frames or [("", "<unknown>", 0)])[-1]
    where = _relative(filename, module)
    rerun = "the traceback above" if debug else "the output of the same command run with --debug"
    return (f"internal error in {where}:{line}: {what}; this is a bug in trajdiff: please report it with "
            f"{rerun}")


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says memory ran out (Python's MemoryError, torch's CPU allocator or CUDA)."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" or (
        isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text))


def describe_out_of_memory(error: BaseException) -> str:
    """One line for a command that asked for more memory than there is: an input too large for this machine."""
    asked = re.search(r"allocate (\d+) bytes", str(error))
    size = f" ({int(asked.group(1)) / 2 ** 30:,.1f} GiB at once)" if asked else ""
    return (f"error: out of memory{size}: lower --batch-size or --samples, or give less data at once (rerun with "
            f"--debug for where it ran out)")


def _plugin_modules() -> dict[str, tuple[str, str, str]]:
    """Module prefix -> (plugin, package, version) for the third-party plugins (not trajdiff's own): each plugin's
    module and the modules of the domains it provides, taken by their top-level package."""
    try:
        from trajdiff.plugins.manager import BUILTIN_PACKAGE, get_plugins

        registry = get_plugins()
        found: dict[str, tuple[str, str, str]] = {}
        named = [(name, plugin) for name, plugin in registry.manager.list_name_plugin() if plugin is not None]
        named += [(entry.provider.plugin, entry.item) for _, entry in registry.domains().entries()]
        for name, plugin in named:
            provider = registry.provider(name)
            module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
            root = module.split(".")[0]
            if provider.package != BUILTIN_PACKAGE and root != "trajdiff" and root not in sys.stdlib_module_names:
                found.setdefault(root, tuple(provider))  # type: ignore[arg-type]
        return found
    except Exception:  # the plugins themselves may be what is broken: then nothing is charged to one
        return {}


def _owner(module: str, owners: dict[str, tuple[str, str, str]]) -> tuple[str, str, str] | None:
    return owners.get(module.split(".")[0]) if module else None


def _relative(filename: str, module: str) -> str:
    """``filename`` from its top-level package on (``acme_plugin/domain.py``), as the module name spells it."""
    path = Path(filename)
    if module.split(".")[0] == "trajdiff" and path.resolve().is_relative_to(_PACKAGE_ROOT):
        return path.resolve().relative_to(_PACKAGE_ROOT).as_posix()
    depth = module.count(".") + 1 + (path.stem == "__init__")
    return "/".join(path.parts[-depth:]) if module and len(path.parts) >= depth else filename


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 600 else text[:597] + "..."


def _echo(line: str) -> None:
    typer.secho(line, fg=typer.colors.RED, err=True)

