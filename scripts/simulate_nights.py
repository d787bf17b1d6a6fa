"""Write simulated raw nights (and their truth) with the simulator.

Usage: python scripts/simulate_nights.py OUT_DIR [demo|mounts|noise]
Writes OUT_DIR/raw/<night>/... and OUT_DIR/truth/. Deterministic.

  demo    the three demo nights (default)
  mounts  four nights turned, flipped and binned (run with trim_section=null)
  noise   two nights 44 px apart with bad columns, hot pixels, many cosmic
          rays and noise differing 2x (run with trim_section="[1:256,1:256]")
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ccdreduce import simulate as sim  # noqa: E402

SETS = {
    "demo": lambda: {},
    "mounts": lambda: {"nights": sim.mount_nights(), "camera": sim.Camera(overscan=0)},
    "noise": lambda: {"nights": sim.noise_nights(), "camera": sim.noise_camera()},
}

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in SETS):
        sys.exit(__doc__)
    which = sys.argv[2] if len(sys.argv) == 3 else "demo"
    truth = sim.simulate(sys.argv[1], **SETS[which]())
    print(f"simulated {len(truth['frames'])} raw frames in {sys.argv[1]}/raw")
