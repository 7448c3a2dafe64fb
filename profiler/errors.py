"""The one error type a user sees: a single line, an exit code, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the input or the machine that the user can fix.

    The CLI prints ``llmprof: <message>`` and exits with ``exit_code``; nothing else.
    Messages name the problem and, where there is one, the fix.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (children stopped, temporary folders
    removed, nothing partial written), then exit 143 (128 + SIGTERM).

    A BaseException, as KeyboardInterrupt is, so that no ``except Exception`` on the
    way out swallows it.
    """

    exit_code = 143
