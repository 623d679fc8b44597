"""``yoso``: one command for everything a user does. Each subcommand lives in its own module and
registers itself through ``register(subparsers)``.

The one error path of the CLI lives here. Exit status of every command: 0 success, 1 a check failed (a spike
mismatch, say), 2 bad input or usage (one line on stderr naming the flag or the file field and the limit,
nothing written), 3 an internal error (a bug: its traceback is printed), 130 interrupted by Ctrl-C (one line
saying what was saved).
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback

from model.datasets import DatasetError
from model.netfile import NetworkFileError
from model.network import NetworkError

from . import flow, fpga, infer, netgen, train, verify, verilog
from .util import CliError, check_output_dir, check_output_file

# Subcommand modules, in --help order.
COMMANDS = [infer, netgen, verilog, fpga, train, verify, flow]

#: Every output path of every command, by argparse dest: "file" or "dir". Checked (yoso/util.py) before the
#: command starts its work; tests/cli/test_bad_input.py fails on an output flag missing here.
OUTPUTS = {
    "infer": {"dump_spikes": "file"},
    "netgen": {"out": "file"},
    "verilog": {"out": "file"},
    "fpga": {"verilog_only": "file", "build_dir": "dir"},
    "train": {"out": "dir"},
    "verify": {},
    "flow": {"out": "dir"},
}

#: Input files an output must never replace (by argparse dest).
INPUTS = ("net", "input_times")

#: Library field names that are a command's flag under another name.
FIELD_FLAGS = {"encoding.t_in_max": "t_in_max", "mesh": "mesh"}

#: Exit status of an internal error (a bug), kept apart from 1 (a check failed) and 2 (bad input).
EXIT_INTERNAL = 3


class UsageError(CliError):
    """An argparse error (unknown flag, missing or malformed value)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors that :func:`main` returns as exit status 2 (no ``sys.exit``)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)", self.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="yoso", description="ReL-PSP spiking networks: train, export, run "
                     "the golden model, generate and verify the YOSO accelerator.",
                     epilog="Exit status: 0 success, 1 a check failed, 2 bad input or usage, 3 internal error, "
                            "130 interrupted.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in COMMANDS:
        mod.register(sub)
    return parser


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def name_flag(message: str, args, default: str | None = None) -> str:
    """Put the flag in front of a library message: a leading ``field:`` that is one of this command's options
    becomes ``--field:``; otherwise ``default`` (a dest) is prefixed when the command has it."""
    if message.startswith("--"):
        return message
    # "field: ..." or, from a derived config, "PE: field: ..." (the config a command builds from its flags).
    m = re.match(r"(?:PE: )?([a-z_][a-z0-9_.]*): ", message)
    if m:
        dest = FIELD_FLAGS.get(m[1], m[1])
        if dest in vars(args):
            return f"{_flag(dest)}: {message[m.end():]}"
    if default is not None and default in vars(args):
        return f"{_flag(default)}: {message}"
    return message


def check_outputs(args) -> None:
    """The shared checks of every command, before it starts its work: no option given an empty value, and every
    output path writable without destroying anything (yoso/util.py)."""
    for dest, value in vars(args).items():
        if value == "":
            raise CliError(f"{_flag(dest)}: empty value")
    inputs = {_flag(d): getattr(args, d) for d in INPUTS if getattr(args, d, None)}
    for dest, kind in OUTPUTS.get(args.command, {}).items():
        path = getattr(args, dest, None)
        if path is None:
            continue
        if kind == "file":
            check_output_file(path, _flag(dest), inputs=inputs)
        else:
            check_output_dir(path, _flag(dest))


def _one_line(text: str) -> str:
    lines = [s.strip() for s in str(text).strip().splitlines() if s.strip()]
    return " | ".join(lines) if lines else type(text).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"{e.args[1]}: error: {e.args[0]}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    prog = f"yoso {args.command}"
    try:
        check_outputs(args)
        return args.func(args) or 0
    except CliError as e:
        print(f"{prog}: error: {name_flag(str(e), args)}", file=sys.stderr)
        return e.exit_code
    except NetworkFileError as e:
        print(f"{prog}: error: {name_flag(_one_line(e), args, 'net')}", file=sys.stderr)
        return 2
    except DatasetError as e:
        print(f"{prog}: error: {name_flag(_one_line(e), args, 'dataset')}", file=sys.stderr)
        return 2
    except NetworkError as e:
        print(f"{prog}: error: {name_flag(_one_line(e), args)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory; the inputs are too large for this machine (lower --limit, "
              "--images or --batch)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = getattr(args, "build_dir", None)
        saved = f"; build files so far stay in {where}" if where else "; outputs are written only on success, " \
                "so none was written"
        print(f"{prog}: interrupted (Ctrl-C){saved}", file=sys.stderr)
        return 130
    except OSError as e:  # the machine, not the program: a full disk, a folder made read-only meanwhile
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prog}: error: {where}{e.strerror or _one_line(e)}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print(f"{prog}: internal error (a bug, not your input): please report the traceback above",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
