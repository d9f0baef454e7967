"""Shared test fixtures."""

from __future__ import annotations

import pytest

from trace_control.trace import name_scope


@pytest.fixture(autouse=True)
def fresh_names():
    """Each test numbers node names from zero, as a fresh program would."""
    with name_scope():
        yield
