"""The one user-facing error type: it names the thing that is wrong and the fix."""
from __future__ import annotations


class ConvdeployError(Exception):
    """A user error (bad path, bad input, unsupported op...). The CLI prints it as one message
    with the fix and exits non-zero, without a traceback unless ``--debug``."""

    def __init__(self, problem: str, *, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}. Fix: {self.fix}" if self.fix else self.problem
