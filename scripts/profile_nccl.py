"""Sweep NCCL collectives on this cluster and fit them into a profile.

    torchrun --standalone --nproc-per-node 8 scripts/profile_nccl.py --out profiles/a100.json
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        scripts/profile_nccl.py --out profiles/a100.json

See ``--help`` and calibrate/nccl/run.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate.nccl.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
