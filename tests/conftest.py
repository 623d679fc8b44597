"""Shared fixtures. ``seed``: deterministic CI (fixed seeds in the default suite, random ones only in ``slow``
sweeps, always printed with the command that replays the test)."""

from __future__ import annotations

import os
import random
import sys

import pytest

import model

#: Base seed of the default suite (random tests derive their case seeds from it).
FIXED_SEED = 1


@pytest.fixture
def seed(request) -> int:
    """The test's base seed: ``SEED`` from the environment if set, else :data:`FIXED_SEED` in the default suite
    and a fresh random seed in tests marked ``slow``. Printed to stderr with its replay command (pytest shows
    it with a failure)."""
    slow = request.node.get_closest_marker("slow") is not None
    env = os.environ.get("SEED")
    value = int(env) if env is not None else random.randrange(1 << 30) if slow else FIXED_SEED
    marker = " -m slow" if slow else ""
    # stderr: tests that parse a command's stdout (capsys) see only the command's output.
    print(f"SEED={value}  replay: SEED={value} .venv/bin/python -m pytest{marker} '{request.node.nodeid}'",
          file=sys.stderr)
    return value


@pytest.fixture
def random_conv_network():
    """Builds random conv2d / maxpool2d / dense networks: ``random_conv_network(rng, in_shape, spec)`` (see
    :func:`model.random_conv_network`; model.random_network makes dense ones only)."""
    return model.random_conv_network


@pytest.fixture(autouse=True, scope="session")
def sram_collisions_checked():
    """Every Amaranth simulation of the suite checks the promise of each SRAM built ``collision_free``
    (rtl/sram.py): its user never reads a row in the cycle that row is written. The board builds rely on it
    (synthesis leaves out the old-data bypass, fpga/boards.py), and no simulation would otherwise notice a
    broken promise, since the simulated memory gives the old word. While a ``Simulator`` elaborates its
    design, such an SRAM adds an ``Assert`` that fails the run at the first clock edge with a collision.
    Verilog and formal models are elaborated outside a ``Simulator`` and stay as they are."""
    from amaranth.hdl import Assert
    from amaranth.sim import Simulator

    from rtl.sram import SRAM

    depth = {"sim": 0}
    sim_init, sram_elaborate = Simulator.__init__, SRAM.elaborate

    def init(self, toplevel, *args, **kwargs):
        depth["sim"] += 1
        try:
            sim_init(self, toplevel, *args, **kwargs)
        finally:
            depth["sim"] -= 1

    def elaborate(self, platform):
        m = sram_elaborate(self, platform)
        if depth["sim"] and self.collision_free:
            shift = self.pack.bit_length() - 1
            same_row = (self.r_addr >> shift) == (self.w_addr >> shift)
            m.d.sync += Assert(~(self.r_en & self.w_en.any() & same_row),
                               f"SRAM built collision_free ({self.depth} words of {self._width} bits): a read "
                               "of the row written in the same cycle")
        return m

    Simulator.__init__, SRAM.elaborate = init, elaborate
    yield
    Simulator.__init__, SRAM.elaborate = sim_init, sram_elaborate
