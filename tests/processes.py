"""Helpers for tests that stop sweeps: whether a process group is really gone."""

import os
import time


def group_ended(pgid: int, within_s: float = 10.0) -> bool:
    """Whether no process of group `pgid` is left, waiting up to `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
