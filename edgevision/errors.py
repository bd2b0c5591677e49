"""Exceptions that carry the CLI exit code, so the API and the CLI agree on what went wrong."""

from __future__ import annotations


class EdgevisionError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 3


class BadInput(EdgevisionError):
    """The user gave something unusable: a path, a value, an option combination. Exit 2."""

    exit_code = 2


class AccuracyRegression(EdgevisionError):
    """An artifact is outside its accuracy (or latency) budget. Exit 1."""

    exit_code = 1


class MissingDependency(BadInput):
    """An optional extra is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        why = f" for {purpose}" if purpose else ""
        super().__init__(f"'{module}' is needed{why}: pip install 'edgevision[{extra}]'")
        self.module = module
        self.extra = extra
