"""The exit codes every command returns, and Terminated: SIGTERM, unwound like Ctrl-C."""

from __future__ import annotations

EXIT_OK, EXIT_FAULT, EXIT_INVALID = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cmd | head -1` reports for other Unix tools


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every temporary file is removed on the way out."""
