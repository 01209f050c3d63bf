"""Concurrent calls in the copied project, run by tests/test_concurrency.py:
``tests.py`` under ``manage.py test --parallel 2``, ``pytest_calls.py``
under ``pytest -n 2``. Not part of the ``inner`` suite."""
