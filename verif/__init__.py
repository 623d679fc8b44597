"""Verification of the YOSO RTL against the golden model: host driver, cocotb testbenches, network runs."""
