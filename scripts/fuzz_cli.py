"""Fuzz the CLI as a careless user would (issue 14): random flags and values, mostly wrong, through
``yoso.cli.main`` in-process. Reports every run that prints a traceback, exits with a status other than 0, 1, 2
or 130, or fails (status 2) with more or less than one line on stderr.

Every path it passes lies in a fresh sandbox folder (files, folders, a FIFO, good and broken arrays and network
files), so nothing outside it can be written. Commands that start simulators or place and route are left out.

    .venv/bin/python scripts/fuzz_cli.py [--runs N] [--seed S]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import signal
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import model
from yoso.cli import main


class _Timeout(BaseException):  # not an Exception: the CLI must not report it as its own error
    pass


def sandbox() -> tuple[Path, list[str]]:
    d = Path(tempfile.mkdtemp(prefix="yoso-fuzz-"))
    model.save(model.random_network("64-8-10", seed=0), d / "net.npz")
    np.save(d / "times.npy", np.zeros((3, 64), np.int64))
    np.save(d / "bad.npy", np.full((3, 64), 999, np.int64))
    np.savez(d / "arch.npz", x=np.zeros(3))
    (d / "text.txt").write_text("1 2 3\n")
    (d / "junk.npz").write_bytes(b"PK\x03\x04junk")
    (d / "folder").mkdir()
    os.mkfifo(d / "fifo")
    names = ["net.npz", "times.npy", "bad.npy", "arch.npz", "text.txt", "junk.npz", "folder", "fifo", "new.npz",
             "missing/deep/out.npz", "text.txt/inside.npz", "run"]
    return d, [str(d / n) for n in names]


def values(paths: list[str]) -> list[str]:
    return ["", "-1", "0", "1", "3", "8", "64", "300", "1e9", "9" * 31, "abc", "nan", "inf", "0.5", "2x2", "0x3",
            "64-8-10", "64-0-10", "1x8x8-c4k3p9-10", "digits", "mnist:", "idx:/nonexistent", *paths]


COMMANDS = {
    "infer": (["--net", "--dataset", "--input-times", "--limit", "--batch", "--dump-spikes", "--min-accuracy",
               "--split"], ["--json"]),
    "netgen": (["--arch", "--seed", "--weight-bits", "--time-bits", "--t-end", "--t-in-max", "--out"], []),
    "verilog": (["--net", "--lanes", "--neurons", "--fan-in", "--weight-bits", "--time-bits", "--defer-depth",
                 "--name", "--out"], ["--json"]),
    "train": (["--dataset", "--arch", "--seed", "--out", "--batch", "--lr", "--jitter", "--val-size",
               "--t-in-max", "--weight-bits", "--tau"], ["--resume", "--force"]),
}
# Keeps a train run that happens to be valid down to a second or two.
TRAIN_FAST = ["--epochs", "1", "--qat-epochs", "0", "--train-limit", "60", "--test-limit", "20", "--quiet",
              "--no-plots"]


def one(rng: random.Random, paths: list[str]) -> list[str]:
    cmd = rng.choice(sorted(COMMANDS))
    opts, switches = COMMANDS[cmd]
    argv = [cmd] + (TRAIN_FAST if cmd == "train" else [])
    for opt in rng.sample(opts, rng.randint(1, len(opts))):
        argv += [opt, rng.choice(values(paths))]
    argv += [s for s in switches if rng.random() < 0.3]
    return argv


def run(argv: list[str], timeout: int) -> tuple[object, str]:
    err = io.StringIO()

    def alarm(*_):
        raise _Timeout

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = main(argv)
    except _Timeout:
        rc = "timeout"
    finally:
        signal.alarm(0)
    return rc, err.getvalue()


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    ap.add_argument("--timeout", type=int, default=60, help="seconds per run (default 60)")
    args = ap.parse_args(argv)
    print(f"seed {args.seed} (replay: --seed {args.seed} --runs {args.runs})")
    warnings.simplefilter("ignore")
    rng = random.Random(args.seed)
    bad, statuses = 0, {}
    for n in range(args.runs):
        d, paths = sandbox()
        cwd = os.getcwd()
        os.chdir(d)
        try:
            argv_ = one(rng, paths)
            rc, err = run(argv_, args.timeout)
        finally:
            os.chdir(cwd)
        statuses[rc] = statuses.get(rc, 0) + 1
        lines = [s for s in err.splitlines() if s.strip() and "\r" not in s]
        problem = ("traceback" if "Traceback" in err else f"status {rc}" if rc not in (0, 1, 2, 130, "timeout")
                   else f"{len(lines)} stderr lines" if rc == 2 and len(lines) != 1 else None)
        if problem:
            bad += 1
            print(f"[{n}] {problem}: yoso {' '.join(repr(a) if not a or ' ' in a else a for a in argv_)}\n"
                  f"    {err.strip().splitlines()[-1] if err.strip() else ''}")
    print(f"{args.runs} runs, {bad} problems; exit statuses {dict(sorted(statuses.items(), key=str))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_())
