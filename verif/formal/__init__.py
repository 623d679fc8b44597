"""Formal proofs of the YOSO RTL with SymbiYosys: harnesses next to the blocks, never inside them.

``PROPERTIES`` lists every proof obligation; ``MUTANTS`` lists deliberately broken blocks (defined in the
harnesses, not in rtl/) with the property that must catch each. ``python -m verif.formal`` runs them and
prints per property: proven (k-induction), bounded to depth N, or FAILED with the counterexample trace.
docs/verification.md has the results.
"""

from __future__ import annotations

import dataclasses

from .core import FormalError, Property, Result, find_tools, run_property
from .fifo import FifoHarness, LossyFIFO
from .load import SMALL_LOAD, LoadHarness
from .pe import SMALL_PE, PEHarness
from .router import DroppingRouter, DuplicatingRouter, RouterHarness

__all__ = ["PROPERTIES", "MUTANTS", "FormalError", "Property", "Result", "find_tools", "run_property", "by_name"]

PROPERTIES = [
    Property("fifo", "StreamFIFO(3 bits, depth 3) is a FIFO: flow control, level = writes - reads, every read "
             "returns the entry written at the same position", lambda: FifoHarness(), depth=8),
    Property("router_conserve", "router (1,1) of 3x3: per input accepted - popped = FIFO level, pops = output "
             "loads, an output is valid iff loaded or held (no loss, no creation)",
             lambda: RouterHarness(mode="conserve"), depth=6),
    Property("router_xy", "router (1,1) of 3x3: every flit an output holds is routed there by XY routing",
             lambda: RouterHarness(mode="xy"), depth=6),
    Property("router_xy_host", "router (0,0) of 2x2: same, host-bound flits leave west",
             lambda: RouterHarness(mode="xy", width=2, height=2, x=0, y=0), depth=6),
    # The magic-flit properties carry flit data through the FIFOs; the solver's cost grows steeply past
    # 5 steps on these, so they are bounded only (docs/verification.md).
    Property("router_route", "router (1,1) of 3x3: a magic flit leaves once, after entering, on its XY port",
             lambda: RouterHarness(mode="route"), depth=5, prove=False),
    Property("router_order", "router (1,1) of 3x3: two magic flits, same input and destination, leave in order",
             lambda: RouterHarness(mode="order"), depth=5, prove=False),
    Property("load_raw", "LOAD (4 words): no token reads a word whose write-back is pending",
             lambda: LoadHarness(), depth=14),   # k = 10 no longer closes the induction with from_defer's check
    Property("load_raw_grouped", "LOAD (4 words, grouped sweep of 2 x 2): no token reads a word whose "
             "write-back is pending", lambda: LoadHarness(config=dataclasses.replace(SMALL_LOAD, sweep_group=2)),
             depth=10),
    Property("load_raw_board_ice40", "LOAD as the iCEBreaker builds it (grouped sweep, next event fetched in "
             "its own cycle): no token reads a word whose write-back is pending",
             lambda: LoadHarness(config=dataclasses.replace(SMALL_LOAD, sweep_group=2, fetch_stage=True)),
             depth=10),
    Property("load_raw_pending_fifo", "LOAD with the pending FIFO (2 entries; write-backs in issue order): no "
             "token reads a word whose write-back is pending, and no more words are outstanding than entries",
             lambda: LoadHarness(config=dataclasses.replace(SMALL_LOAD, pending_fifo=2)), depth=14),
    Property("load_raw_board_big", "LOAD as board builds make big conv PEs (pending FIFO of 3, grouped sweep of "
             "2 x 2): the same", lambda: LoadHarness(config=dataclasses.replace(SMALL_LOAD, pending_fifo=3,
                                                                              sweep_group=2)), depth=14),
    # The PE harnesses: k-induction at k = 30 did not finish in 15 minutes; BMC only.
    Property("pe_no_dup", "PE (2 neurons, t_end 2): no neuron spikes twice in one inference",
             lambda: PEHarness(mode="no_dup"), depth=30, prove=False),
    Property("pe_order", "PE: output markers 0, 1, 2 ... one step at a time; spikes carry the next step",
             lambda: PEHarness(mode="order"), depth=20, prove=False),
    Property("pe_conserve", "PE: every decided output event (spike, marker) leaves o exactly once",
             lambda: PEHarness(mode="conserve"), depth=30, prove=False),
    Property("pe_conserve_compute_stage", "PE with COMPUTE's products registered (compute_stage, as the "
             "iCEBreaker builds it): every decided output event leaves o exactly once",
             lambda: PEHarness(mode="conserve", config=dataclasses.replace(SMALL_PE, compute_stage=True)),
             depth=30, prove=False),
]

#: (mutant name, property it must fail, harness builder, BMC depth)
MUTANTS = [
    ("fifo_lossy", "fifo", lambda: FifoHarness(dut_class=LossyFIFO), 8),
    ("router_drop", "router_conserve", lambda: RouterHarness(mode="conserve", dut_class=DroppingRouter), 6),
    ("router_dup", "router_route", lambda: RouterHarness(mode="route", dut_class=DuplicatingRouter), 8),
    ("router_misroute", "router_route", lambda: RouterHarness(mode="route", dut_xy=(0, 1)), 8),
    ("router_misroute_xy", "router_xy", lambda: RouterHarness(mode="xy", dut_xy=(0, 1)), 6),
    ("load_early_done", "load_raw", lambda: LoadHarness(mutant="early_done"), 10),
    ("load_fifo_any_order", "load_raw_pending_fifo",
     lambda: LoadHarness(config=dataclasses.replace(SMALL_LOAD, pending_fifo=2), mutant="any_order"), 10),
    ("pe_drop", "pe_conserve", lambda: PEHarness(mode="conserve", mutant="drop"), 12),
    ("pe_dup", "pe_conserve", lambda: PEHarness(mode="conserve", mutant="dup"), 12),
]


def by_name(name: str) -> Property:
    for p in PROPERTIES:
        if p.name == name:
            return p
    raise KeyError(name)
