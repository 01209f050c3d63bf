#!/usr/bin/env python
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    if os.environ.get("TESTBED_START_METHOD"):
        # macOS's default (and forkserver's kin): --parallel workers that
        # import everything afresh.
        import multiprocessing

        multiprocessing.set_start_method(os.environ["TESTBED_START_METHOD"])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
