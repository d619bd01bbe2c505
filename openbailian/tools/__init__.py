"""Plugins: custom HTTP tools, built-ins, and the outbound guard they all go through."""
