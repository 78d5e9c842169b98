"""Pieces every command shares: the error console, the friendly-error decorator, common arguments."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from her2dlr.errors import Her2dlrError

__all__ = ["INTERRUPTED_EXIT", "INTERRUPTED_MESSAGE", "ArchOption", "StudyArg", "console", "friendly", "sub_app"]

console = Console(stderr=True)

#: The study file argument of the stage commands.
StudyArg = Annotated[Path, typer.Argument(help="Study file.", show_default=True)]
#: The network whose fold checkpoints are under ``<run>/deep/<arch>/``.
ArchOption = Annotated[str, typer.Option("--arch", help="Network whose checkpoints are under <run>/deep/<arch>/.")]


#: Exit status after Ctrl-C (128 + SIGINT, what shells report for a command stopped by it).
INTERRUPTED_EXIT = 130
#: What a user reads after Ctrl-C. Every output is written to a temporary path and renamed into place
#: when complete (her2dlr.io.atomic), and finished per-case work is cached, so a rerun resumes.
INTERRUPTED_MESSAGE = ("Interrupted (Ctrl-C). Nothing half-written was left: outputs are put in place only when "
                       "complete. Rerun the same command to resume; finished work (e.g. extracted cases) is "
                       "reused from the cache.")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the toolkit's own errors as one clear message and exit code 2, without a traceback.

    Ctrl-C ends the command with :data:`INTERRUPTED_MESSAGE` and exit code :data:`INTERRUPTED_EXIT`.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Her2dlrError as exc:
            console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # the file system said no (permission, full disk, a file where a folder should be)
            where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f) or "a file"
            console.print(f"[bold red]Error:[/] cannot use {escape(where)}: {escape(exc.strerror or str(exc))}. "
                          "Nothing half-written was left; fix the path or free space, then rerun.",
                          highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print(f"\n[bold yellow]{INTERRUPTED_MESSAGE}[/]", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None

    return wrapper


def sub_app(help_text: str) -> typer.Typer:
    """A command group (``her2dlr cohort ...``) with the toolkit's settings."""
    return typer.Typer(help=help_text, no_args_is_help=True, pretty_exceptions_enable=False)
