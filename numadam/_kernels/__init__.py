"""Kernel factories: they turn a rule of :mod:`numadam._rules` into compiled loops."""
