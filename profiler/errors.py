"""Errors that the command line reports as one line (exit status 2), importable without
the libraries of the modules that raise them (pyarrow, pandas): `python -m profiler`
refuses bad input before it imports those.

Every such error derives from `UserError`, which `cli.main` catches once: a new kind of
bad input is a new subclass, raised where it is found, and needs no code in the CLI.
(`api.MeasurementError` is not one: it reports a measurement that failed, to a notebook,
with the row that says why.)"""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a spec, a flag, a results folder, a revision) that the user can fix. The
    message is one line that names the problem."""


class SpecError(UserError, ValueError):
    """A spec, an override or a flag is malformed."""


class StoreError(UserError, ValueError):
    """A results folder cannot be used as asked."""
