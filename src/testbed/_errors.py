"""The root of testbed's errors, below every layer so each can raise them."""

from __future__ import annotations


class TestbedError(Exception):
    """Base class of testbed's errors."""

    __test__ = False  # not a test class, despite the name
