"""Issue 14 on collections grown by our own grower (``tests/trace/test_grown_collections.py``).

Run: ``python bench/trace_grown.py``

Runs every case of that file, the heavy one included and xfail markers ignored, and prints each case's
numbers: grower-made jump patches (``sheet_gap=0``, grown in fused zones) at 5 %, 10 %, 20 % of a linked
tiling on the realistic draw 3 (jump edges in the wrong patches, the trace's jump edges and distances
to the true sheet next to the perfect patches' own trace); a collection grown with the default params
on the same draw (with its holes and fused zone); and that collection with one wrap cut over its whole
height, where the trace must cross the seam between the two patch groups (open in issue 14).
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/queue.py is not the stdlib's

import pytest  # noqa: E402

if __name__ == "__main__":
    test = Path(__file__).resolve().parent.parent / "tests" / "trace" / "test_grown_collections.py"
    sys.exit(pytest.main([str(test), "-m", "heavy or not heavy", "--runxfail", "-s", "-q", "-p", "no:cacheprovider"]))
