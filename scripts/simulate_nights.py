"""Write the demo's raw nights (and their truth) with the simulator.

Usage: python scripts/simulate_nights.py OUT_DIR
Writes OUT_DIR/raw/<night>/... and OUT_DIR/truth/. Deterministic.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ccdreduce.simulate import simulate  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    truth = simulate(sys.argv[1])
    print(f"simulated {len(truth['frames'])} raw frames in {sys.argv[1]}/raw")
