"""The golden model: the integer, bit-exact definition of what a ReL-PSP network computes (docs/spec.md).

Plain Python and numpy only: no torch, amaranth or cocotb imports, so every other part of the project can
depend on it.
"""

from .encoding import encode
from .golden import NO_DECISION, Result, conv_as_dense, decide, dense_equivalent, maxpool_times, run, run_reference
from .netfile import NetworkFileError, load, save
from .network import (
    Conv2d,
    Dense,
    Encoding,
    MaxPool2d,
    Network,
    NetworkError,
    no_spike,
    potential_bits,
    weight_sum_bits,
)
from .random_net import random_conv_network, random_network

__all__ = [
    "Conv2d", "Dense", "Encoding", "MaxPool2d", "Network", "NetworkError", "NetworkFileError", "NO_DECISION",
    "Result", "conv_as_dense", "decide", "dense_equivalent", "encode", "load", "maxpool_times", "no_spike",
    "potential_bits", "random_conv_network", "random_network", "run", "run_reference", "save", "weight_sum_bits",
]
