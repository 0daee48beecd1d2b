"""One rule for reading CI, for every test that needs something `make test` installs (chromium, Fashion-MNIST):
CI set to anything but "", 0, false or no (any case) means CI. There a missing dependency is a broken set-up and
fails the test; on a developer's machine it skips with what to install."""

from __future__ import annotations

import os

import pytest

NOT_CI = ("", "0", "false", "no")


def in_ci() -> bool:
    """Whether this is a CI run: CI=true, CI=1, CI=yes, ... all count (CI services set different values)."""
    return os.environ.get("CI", "").strip().lower() not in NOT_CI


def missing(message: str) -> None:
    """Fail under CI, where `make test` installs what is missing; skip elsewhere, saying how to get it."""
    if in_ci():
        pytest.fail(f"{message}; CI installs it, so its absence is an error here")
    pytest.skip(message)
