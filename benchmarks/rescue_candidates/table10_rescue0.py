"""`anyloss reproduce` with the torch adapter's rescue gradient off (rescue=0, the paper's gradient), to compare with the defaults.

    python benchmarks/rescue_candidates/table10_rescue0.py reproduce --table 10 --json t10r0.json
"""
import sys
import anyloss_torch._autograd as A
_orig = A.prepared_for_rescue
A.prepared_for_rescue = lambda *a, **k: _orig(*a, **{**k, "rescue": 0.0})
from anyloss_bench.cli import main
sys.exit(main(sys.argv[1:]))
