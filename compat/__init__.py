"""Compatibility harnesses: third-party test suites run with and without
testbed, whose results must agree.

``scripts/django-suite`` runs Django's own test suite from its sdist in
both ways, recording every test's outcome (``compat.recording``), and
compares the two records (``compat.compare``).
"""
