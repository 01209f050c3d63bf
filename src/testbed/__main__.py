"""``python -m testbed``: the same as the ``testbed`` command."""

from __future__ import annotations

from testbed.cli import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
