"""Progress of a sweep as the runner reports it: `show(done, total, line)` per measurement."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Progress = Callable[[int, int, str], None]


def progress(*, notebook: bool = False) -> Progress:
    """A tqdm bar with ETA, whose postfix is the last measurement's line: drawn on a
    terminal (stderr), or as tqdm's widget in a notebook (`notebook`). Otherwise (logs,
    CI) one plain line per measurement."""
    if notebook:
        from tqdm.auto import tqdm
    elif sys.stderr.isatty():
        from tqdm import tqdm
    else:
        return lambda done, total, line: print(f"[{done}/{total}] {line}", flush=True)

    bar: list[Any] = []

    def show(done: int, total: int, line: str) -> None:
        if not bar:
            bar.append(tqdm(total=total, unit="point", dynamic_ncols=True))
        bar[0].set_postfix_str(line, refresh=False)
        bar[0].update(1)
        if done == total:
            bar[0].close()

    return show
