"""``yoso``: one command for everything a user does. Each subcommand lives in its own module and
registers itself through ``register(subparsers)``."""

from __future__ import annotations

import argparse
import sys

from model.datasets import DatasetError
from model.network import NetworkError

from . import fpga, infer, netgen, train, verify, verilog
from .util import CliError

# Subcommand modules, in --help order.
COMMANDS = [infer, netgen, verilog, fpga, train, verify]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yoso", description="ReL-PSP spiking networks: train, export, run "
                                     "the golden model, generate and verify the YOSO accelerator.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in COMMANDS:
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (CliError, NetworkError, DatasetError) as e:
        print(f"yoso {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
