"""Print the validation table of the shipped profiles against the shared vLLM measurements.

    .venv/bin/python scripts/bench_validate.py [CSV ...] [-- extra `solver validate` flags]

Default CSV: ../shared/data/vllm/l40s_llama70b_offline.csv (README beside it). Same output as
`solver validate CSV --profile profiles/`; the held-out line is the number to quote (rows the
serving fit never saw, see docs/metrics.md "validation error").
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "vllm" / "l40s_llama70b_offline.csv"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from solver.cli import main as solver_main
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    csvs = (argv[:argv.index("--")] if "--" in argv else argv) or [str(DEFAULT_CSV)]
    rc = 0
    for csv in csvs:
        rc = max(rc, solver_main(["validate", csv, "--profile", str(ROOT / "profiles"), *extra]))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
