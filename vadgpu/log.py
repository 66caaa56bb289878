"""The `vadgpu` logger: how library code tells its user something (a cache made, a feature off, a notice).

Library code calls `logger.info(...)` / `logger.warning(...)` here instead of printing, so a Python user decides
what is shown (`logging.basicConfig(level=logging.INFO)` shows it all; by default only warnings reach stderr,
through Python's last-resort handler). The `vadgpu` command calls `show_on_terminal()`: every record at INFO and
above becomes one plain line on stderr, written through tqdm so that it does not break a progress bar.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("vadgpu")


class _TerminalLines(logging.Handler):
    """The message alone, one line per record, on the current sys.stderr (looked up at each record)."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a closed stream must not turn a message into a crash
            self.handleError(record)


def show_on_terminal(level: int = logging.INFO) -> None:
    """Print the `vadgpu` logger's records as plain lines on stderr (once per process; the CLI calls this)."""
    if not any(isinstance(h, _TerminalLines) for h in logger.handlers):
        logger.addHandler(_TerminalLines())
    logger.setLevel(level)
    logger.propagate = False  # the lines are shown here; a root handler would show them twice
