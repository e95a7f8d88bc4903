#!/usr/bin/python3
"""run_pytest.py: ctest's entry to the pytest suite in this folder (tests/python).

Runs pytest on the folder given as argv[1] against the `xent` package found on PYTHONPATH (ctest
sets build/python). Exits 77, which ctest reports as skipped, when pytest or numpy cannot be
imported; the torch tests skip themselves (pytest.importorskip) when torch is absent. Not a test
itself.
"""
import sys

try:
    import numpy  # noqa: F401
    import pytest
except Exception as e:  # noqa: BLE001 - any import failure means "cannot run here"
    print(f"SKIPPED: pytest and numpy are needed for the Python tests ({type(e).__name__}: {e})")
    sys.exit(77)

sys.exit(pytest.main([sys.argv[1], "-q", "-p", "no:cacheprovider", "-rs"]))
