"""Errors every ``powrd`` command reports the same way."""

from __future__ import annotations


class UsageError(Exception):
    """Unusable input or configuration: one line on stderr, exit code 2."""
