"""Whether the tests run in CI, and what a test does there when something it needs is
missing: under CI it fails (the project's own files install everything a test needs:
pyproject.toml's extras through the Makefile, Chromium through .ci/run); elsewhere it skips,
saying how to install it. Every test that would skip goes through here."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

TRUE = ("1", "true", "yes")


def in_ci() -> bool:
    """CI set to a true value (1, true, yes; any case), as GitHub Actions and most services set it."""
    return os.environ.get("CI", "").strip().lower() in TRUE


def missing(message: str) -> None:
    """Fail under CI, skip elsewhere, with `message` (what is missing, how to install it)."""
    if in_ci():
        pytest.fail(f"{message} (CI={os.environ['CI']}: a missing install fails, it does not skip)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(module: str, install: str) -> ModuleType:
    """`module` imported, or `missing` with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing(f"{module} does not import ({e}); install it with {install}")
        raise  # not reached: missing() raises
