"""Pieces every command shares: the error console, the friendly-error decorator, common arguments."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from her2dlr.errors import Her2dlrError

__all__ = ["ArchOption", "StudyArg", "console", "friendly", "sub_app"]

console = Console(stderr=True)

#: The study file argument of the stage commands.
StudyArg = Annotated[Path, typer.Argument(help="Study file.", show_default=True)]
#: The network whose fold checkpoints are under ``<run>/deep/<arch>/``.
ArchOption = Annotated[str, typer.Option("--arch", help="Network whose checkpoints are under <run>/deep/<arch>/.")]


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the toolkit's own errors as one clear message and exit code 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Her2dlrError as exc:
            console.print(f"[bold red]Error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def sub_app(help_text: str) -> typer.Typer:
    """A command group (``her2dlr cohort ...``) with the toolkit's settings."""
    return typer.Typer(help=help_text, no_args_is_help=True, pretty_exceptions_enable=False)
