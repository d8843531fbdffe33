"""Errors a user can fix: the CLI prints them on one line and exits with their code."""

from __future__ import annotations


class BenchmarkError(Exception):
    """Bad usage or bad input (exit code 2): the message names the file and the fix."""

    exit_code = 2


class CheckFailed(BenchmarkError):
    """A check or comparison ran and failed (exit code 1)."""

    exit_code = 1
