"""Faults injected at every step of every operation, for every adapter."""
