"""FPGA flow: UART host link, framed protocol, protocol engine, board tops, host driver and build reports
(docs/fpga.md)."""
