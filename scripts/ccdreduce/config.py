"""Checks of the configuration that a JSON schema cannot express."""

from pathlib import Path

from .errors import ConfigProblem

_NULLS = {"", "null", "none", "~"}


def _section_value(value):
    """A section as given on the command line, made a plain string or None.

    ``--config trim_section=[1:4096,1:4096]`` reaches us as the YAML list
    ['1:4096', '1:4096'], and ``trim_section=null`` as the string 'null'.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v).strip() for v in value) + "]"
    if isinstance(value, str) and value.strip().lower() in _NULLS:
        return None
    return value


def normalise(config):
    """Undo the command line's parsing of section values (in place)."""
    if "trim_section" in config:
        config["trim_section"] = _section_value(config["trim_section"])
    overscan = config.get("overscan")
    if isinstance(overscan, dict) and "section" in overscan:
        overscan["section"] = _section_value(overscan["section"])
    return config


def check_config(config):
    """Raise ConfigProblem for settings that would go wrong with any data."""
    raw = Path(config["raw_dir"]).resolve()
    results = Path(config["results_dir"]).resolve()
    if raw == results or raw in results.parents or results in raw.parents:
        raise ConfigProblem(
            f"raw_dir ({raw}) and results_dir ({results}) overlap; raw files "
            "must never sit where products are written",
            "point results_dir at a folder outside raw_dir",
        )
    overscan = config["overscan"]
    if overscan["subtract"] and not overscan.get("section"):
        raise ConfigProblem(
            "overscan.subtract is true but overscan.section is not set",
            "give the overscan strip as [x1:x2,y1:y2], or set subtract: false",
        )


def check_against_plan(config, plan, stacks):
    """Raise ConfigProblem, before any job, for settings that cannot work
    with the frames the plan uses: a trim or overscan section outside a
    frame, a pinned reference that is not a frame of its stack."""
    from .layout import frame_id
    from .sections import section_slices

    used = [frame for frame, _ in plan.lights.values()]
    used += [frame for master in plan.masters.values() for frame in master.frames]
    sections = {"trim_section": config.get("trim_section")}
    if config["overscan"]["subtract"]:
        sections["overscan.section"] = config["overscan"].get("section")
    by_shape = {}
    for frame in used:
        by_shape.setdefault(frame.shape, frame)
    for shape, frame in sorted(by_shape.items()):
        for name, section in sections.items():
            if not section:
                continue
            try:
                section_slices(section, shape)
            except ValueError as exc:
                ny, nx = shape
                raise ConfigProblem(
                    f"{name} {section} does not fit frame {frame.relpath} ({nx}x{ny} "
                    f"pixels): {exc}",
                    f"set {name} to a section inside the frames, e.g. [1:{nx},1:{ny}], "
                    "or exclude frames of another size",
                ) from None
    for group, pinned in sorted(config["stacking"]["reference"].items()):
        if group not in stacks:
            raise ConfigProblem(
                f"stacking.reference pins {pinned!r} for stack {group!r}, but there is no "
                f"such stack (stacks: {', '.join(sorted(stacks)) or 'none'})",
                "correct the stack's name or remove the pin",
            )
        ids = sorted(frame_id(frame.night, frame.stem) for frame in stacks[group])
        if pinned not in ids:
            raise ConfigProblem(
                f"stacking.reference pins {pinned!r} for stack {group!r}, which is not one "
                f"of its frames ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})",
                "name a frame as '<night>/<file stem>', or remove the pin",
            )


def noise_settings(config):
    """Where the calibrate job finds each frame's gain and read noise
    besides what the masters measured: header keywords and config's camera."""
    keywords = config["headers"]["keywords"]
    return {
        "keywords": {"gain": keywords["gain"], "read_noise": keywords["read_noise"]},
        "camera": dict(config.get("camera") or {}),
    }


def pixel_settings(config):
    """The settings that act on pixels during calibration, as plain values.

    Rules pass these as params, not through the config, so that changing
    one (trim_section, say) reruns exactly the jobs that use it.
    """
    overscan = config.get("overscan") or {}
    return {
        "trim_section": config.get("trim_section"),
        "overscan_section": overscan.get("section"),
        "overscan_model": overscan.get("model", "median"),
        "saturation_adu": float(config.get("saturation_adu", 65535)),
        "min_flat": float(config["calibration"].get("min_flat", 0.05)),
        "pedestal": _number_or_none(config["calibration"].get("pedestal")),
    }


def _number_or_none(value):
    return None if value is None else float(value)
