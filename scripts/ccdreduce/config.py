"""Checks of the configuration that a JSON schema cannot express."""

from pathlib import Path

from .errors import ConfigProblem


def check_config(config):
    """Raise ConfigProblem for settings that would go wrong with any data."""
    raw = Path(config["raw_dir"]).resolve()
    results = Path(config["results_dir"]).resolve()
    if raw == results or raw in results.parents or results in raw.parents:
        raise ConfigProblem(
            f"raw_dir ({raw}) and results_dir ({results}) overlap; raw files "
            "must never sit where products are written. Fix: point "
            "results_dir at a folder outside raw_dir"
        )
    overscan = config["overscan"]
    if overscan["subtract"] and not overscan.get("section"):
        raise ConfigProblem(
            "overscan.subtract is true but overscan.section is not set. Fix: "
            "give the overscan strip as [x1:x2,y1:y2], or set subtract: false"
        )
