"""Write simulated raw nights (and their truth) with the simulator.

Usage: python scripts/simulate_nights.py OUT_DIR [demo|mounts|noise|colour|cameras|lights-only]
Writes OUT_DIR/raw/<night>/... and OUT_DIR/truth/. Deterministic.

  demo    the three demo nights (default)
  mounts  four nights turned, flipped and binned (run with trim_section=null)
  noise   two nights 44 px apart with bad columns, hot pixels, many cosmic
          rays and noise differing 2x (run with trim_section="[1:256,1:256]")
  colour  a night of a GRBG colour camera, 16 lights (run with
          trim_section="[1:256,1:256]")
  cameras one night of two cameras (a CCD and a CMOS), darks at another set
          point, 300.1 s lights, a filter spelt 'Johnson V' (run with
          trim_section=null and a configfile giving
          filters: {aliases: {"Johnson V": V}})
  lights-only  a smart telescope's night of lights only (run with
          trim_section=null calibration='{on_missing: uncalibrated}' or a configfile)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ccdreduce import simulate as sim  # noqa: E402

SETS = {
    "demo": lambda: {},
    "mounts": lambda: {"nights": sim.mount_nights(), "camera": sim.Camera(overscan=0)},
    "noise": lambda: {"nights": sim.noise_nights(), "camera": sim.noise_camera()},
    "colour": lambda: {"nights": sim.colour_nights(), "camera": sim.colour_camera()},
    "lights-only": lambda: {"nights": [sim.lights_only_night()], "camera": sim.smart_camera()},
}

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (
        len(sys.argv) == 3 and sys.argv[2] not in {*SETS, "cameras"}
    ):
        sys.exit(__doc__)
    which = sys.argv[2] if len(sys.argv) == 3 else "demo"
    if which == "cameras":  # two cameras: their own simulation
        truth = sim.simulate_matching(sys.argv[1])
    else:
        truth = sim.simulate(sys.argv[1], **SETS[which]())
    print(f"simulated {len(truth['frames'])} raw frames in {sys.argv[1]}/raw")
