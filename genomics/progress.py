"""Progress of long site-local work (stage, variants done): a live line on a terminal, plain lines otherwise.

On a tty the line is rewritten in place at most ten times a second; when stderr is a
file or pipe, a plain time-stamped line is written every ``log_every`` seconds and at
the end. Only counts are reported, never data values.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

class Progress:
    """Progress of one stage: ``update(done)`` as work advances, ``finish()`` at the end.

    stage: short label ("local-stats"); total: expected count or None; unit: what is
    counted; stream: where the live line goes (default stderr); log_every: seconds
    between log lines when the stream is not a terminal.
    """

    def __init__(self, stage: str, total: int | None = None, unit: str = "variants",
                 stream: TextIO | None = None, log_every: float = 10.0):
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.start = self._last = time.monotonic()
        self.done = 0
        self._shown = False

    def _text(self) -> str:
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        if self.total:
            pct = 100.0 * self.done / self.total
            return (f"{self.stage}: {self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%),"
                    f" {rate:,.0f} {self.unit}/s")
        return f"{self.stage}: {self.done:,} {self.unit}, {rate:,.0f} {self.unit}/s"

    def update(self, done: int) -> None:
        """Record that ``done`` units are complete (monotone)."""
        self.done = int(done)
        now = time.monotonic()
        if self.tty:
            if now - self._last >= 0.1:
                self.stream.write("\r" + self._text() + "\x1b[K")
                self.stream.flush()
                self._last = now
                self._shown = True
        elif now - self._last >= self.log_every:
            self._plain(self._text())
            self._last = now

    def _plain(self, text: str) -> None:
        self.stream.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Final line: total done and elapsed time."""
        elapsed = time.monotonic() - self.start
        text = f"{self.stage}: {self.done:,} {self.unit} in {elapsed:.1f} s"
        if self.tty:
            self.stream.write(("\r" if self._shown else "") + text + "\x1b[K\n")
            self.stream.flush()
        else:
            self._plain(text)
