"""The host side: everything between numpy and the accelerator's stream ports.

* :mod:`host.codec` — events, configuration words and flits packed through the RTL's Amaranth layouts, and the
  one checked decoder of output event streams;
* :mod:`host.plan` — the one way to derive a PE from a network, mesh plans (placement, destination tables,
  configuration flits, SOP accounting) and the stacked one-PE plan, serialisable as data;
* :mod:`host.runner` — the mesh host runner (run-ahead window, completion, early exit, decoding) over any port;
* :mod:`host.pysim` — that runner over the Amaranth simulator.

Layer rule (tests/test_layers.py): ``model`` -> ``rtl`` -> ``host`` -> ``verif`` / ``fpga`` / ``training`` ->
``yoso``; nothing here imports ``verif``, ``fpga``, ``training`` or ``yoso``.
"""
