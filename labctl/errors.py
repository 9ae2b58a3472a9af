"""Errors that reach the user. The CLI turns them into a message and an exit code."""

from __future__ import annotations


class LabctlError(Exception):
    """An error with a message for people and an exit code."""

    exit_code = 1


class UserError(LabctlError):
    """Bad input or a missing prerequisite: exit 2, nothing changed on any host."""

    exit_code = 2


class RunFailed(LabctlError):
    """A run (provision, verify, up) failed on a host: exit 1."""

    exit_code = 1
