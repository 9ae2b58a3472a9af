"""labctl status: not built yet (see the issues)."""

from __future__ import annotations

import argparse

from labctl.commands._common import add_command
from labctl.errors import UserError


def add_parser(sub) -> None:
    add_command(sub, "status", "(not built yet)", "labctl status", run)


def run(args: argparse.Namespace) -> int:
    raise UserError("labctl status is not built yet")
