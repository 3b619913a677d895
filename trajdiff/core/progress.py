"""Progress of long loops (training steps, forecast windows) wherever the output goes.

Why: a tqdm bar draws only in a terminal, so a run whose output went to a file or a pipe (a batch job,
``nohup``, ``| tee``) printed nothing for many minutes. `Progress` draws the bar in a terminal and
otherwise writes one plain line every ``interval`` seconds (default 10; the environment variable
``TRAJDIFF_PROGRESS_SECONDS`` changes it) with the count done, what the caller adds (e.g. the loss),
the rate and the time left.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "progress_interval"]

DEFAULT_INTERVAL = 10.0


def progress_interval() -> float:
    """Seconds between progress lines off a terminal: ``TRAJDIFF_PROGRESS_SECONDS`` if set (> 0), else 10."""
    try:
        value = float(os.environ.get("TRAJDIFF_PROGRESS_SECONDS", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 and value == value else DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts ``total`` units of work (``unit``) under a name (``what``): a tqdm bar where ``stream``
    (default stderr) is a terminal, else a line every ``interval`` seconds, and a last line at `close` if
    any was written. ``initial`` units are already done (a resumed run); ``enabled=False`` shows nothing.
    ``delay``: seconds before the bar first appears (quick runs show none)."""

    def __init__(self, total: int, what: str, unit: str = "step", *, initial: int = 0, enabled: bool = True,
                 stream: TextIO | None = None, interval: float | None = None, delay: float = 0.0) -> None:
        self.total, self.what, self.unit = int(total), what, unit
        self.done = self.initial = int(initial)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = progress_interval() if interval is None else float(interval)
        self.started = self.last = time.monotonic()
        self.lines = 0
        self.info: dict[str, Any] = {}
        self.bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, desc=what, unit=unit, leave=False,
                            file=self.stream, delay=delay)

    def update(self, count: int = 1, **info: Any) -> None:
        """``count`` more units done; ``info`` (e.g. ``loss="0.1234"``) is shown with the next bar or line."""
        self.done += count
        self.info.update(info)
        if self.bar is not None:
            self.bar.update(count)
            if info:
                self.bar.set_postfix(self.info, refresh=False)
        elif self.enabled and time.monotonic() - self.last >= self.interval:
            self.write()

    def line(self) -> str:
        """The progress line: count, share, what the caller added, rate, elapsed and time left."""
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        share = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.what}: {self.unit} {self.done}/{self.total}{share}"]
        parts += [f"{key} {value}" for key, value in self.info.items()]
        parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.3g} s/{self.unit}")
        parts.append(f"{_duration(elapsed)} elapsed")
        if self.done < self.total:
            left = (self.total - self.done) / rate if rate > 0 else None
            parts.append(f"about {_duration(left)} left" if left is not None else "time left unknown")
        return ", ".join(parts)

    def write(self) -> None:
        """Writes the progress line now (off a terminal)."""
        self.last = time.monotonic()
        self.lines += 1
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """Removes the bar, or writes a last line if lines were written."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.lines:
            self.write()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
