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
