"""The YOSO accelerator in Amaranth HDL: the processing element (PE) and its blocks.

Start with :mod:`rtl.config` (the parameters), :mod:`rtl.layouts` (every event and memory word) and
:mod:`rtl.pe` (the top); docs/pe.md describes the protocol and the cycle model.
"""
