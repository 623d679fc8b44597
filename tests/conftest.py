"""Shared fixtures. ``seed``: deterministic CI (fixed seeds in the default suite, random ones only in ``slow``
sweeps, always printed with the command that replays the test)."""

from __future__ import annotations

import math
import os
import random
import sys

import numpy as np
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


def _random_conv_network(rng, in_shape, spec, *, time_bits=4, weight_bits=8):
    """A random integer network from ``spec``: ("conv", out_channels, kernel, stride, padding), ("pool",
    kernel, stride) or ("dense", n) per layer; weights shifted up by a quarter of full scale and thresholds a
    few to a few tens of steps of drive, so that most neurons fire at spread-out times."""
    wmax = (1 << (weight_bits - 1)) - 1
    layers, shape = [], tuple(in_shape)

    def weights(size):
        return np.clip(rng.integers(-wmax - 1, wmax + 1, size=size) + wmax // 4, -wmax - 1, wmax)

    def thresholds(fan_in, w, n):
        drive = max(1.0, 0.5 * fan_in * max(1.0, float(w.mean())))
        return np.clip(rng.uniform(3, 16, size=n) * drive, 1, (1 << 16) - 1).astype(np.int64)

    for kind, *p in spec:
        if kind == "conv":
            oc, k, stride, padding = p
            w = weights((oc, shape[0], k, k))
            layer = model.Conv2d(in_shape=shape, weight=w, threshold=thresholds(shape[0] * k * k, w, oc),
                                 stride=stride, padding=padding)
        elif kind == "pool":
            layer = model.MaxPool2d(in_shape=shape, kernel=p[0], stride=p[1])
        else:
            w = weights((math.prod(shape), p[0]))
            layer = model.Dense(weight=w, threshold=thresholds(math.prod(shape), w, p[0]))
        layers.append(layer)
        shape = tuple(layer.out_shape)
    return model.Network.build(input_shape=tuple(in_shape), layers=layers, time_bits=time_bits,
                               weight_bits=weight_bits)


@pytest.fixture
def random_conv_network():
    """Builds random conv2d / maxpool2d / dense networks: ``random_conv_network(rng, in_shape, spec)`` (see
    :func:`_random_conv_network`; model.random_network makes dense ones only)."""
    return _random_conv_network
