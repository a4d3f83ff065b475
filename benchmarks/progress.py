"""One rich progress bar for a whole run; quiet (no-op) when output is not a terminal or --quiet."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class _Silent:
    def update(self, *args, **kwargs) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


class _Bar:
    def __init__(self, progress, task):
        self._progress, self._task = progress, task

    def update(self, advance: float = 1.0) -> None:
        self._progress.update(self._task, advance=advance)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)


@contextmanager
def progress_bar(total: float, description: str, enabled: bool = True):
    """Yield an object with update(advance) and describe(text); rich is imported only when shown."""
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Bar(progress, progress.add_task(description, total=total))
