"""Errors that the command line reports as one line (exit status 2), importable without
the libraries of the modules that raise them (pyarrow, pandas): `python -m profiler`
refuses bad input before it imports those."""

from __future__ import annotations


class StoreError(ValueError):
    """A results folder cannot be used as asked. The message is one line."""
