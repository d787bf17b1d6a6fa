"""Where each product lives under results_dir, and how a frame is named.

The one home of the results layout: rules, input functions, tables and
scripts ask here for a path; nothing else writes one by hand. Each function
takes the results folder first (``None``: the path relative to it, as
tables and headers record it) and returns a str; given wildcards
(``"{night}"``) it returns a rule's pattern.

    calib/<night>/        bias.fits, dark_<exposure>s.fits, flat_<filter>.fits
                          (each with its .png), bad_pixels.fits and .png,
                          frames.ecsv, night_log.ecsv; <camera>/ holds the
                          masters of a night's second camera or set point
    calibrated/<night>/   <stem>.fits        a calibrated science frame (of a
                          colour sensor: its calibrated mosaic, and
                          <stem>_R.fits, _G.fits, _B.fits its demosaiced channels)
    catalogs/<night>/     <stem>.ecsv        its stars
    registered/<night>/<group>/<stem>.fits   on the grid of the stack <group>
    stacks/<group>/       <method>.fits and .png, frames.ecsv, frames.png,
                          stats.ecsv, reference.json, reference.lock
    stacks/<group>/R|G|B/ a colour group's channel stacks, as above; and
    stacks/<group>/       <method>.png, the colour preview of the three
    .cache/headers/       <night>.json, the inventory's header cache
    logs/, benchmarks/    one .log / .tsv a job, mirroring the products

A frame is named '<night>/<stem>' in config (stacking.reference), tables and
logs: its night folder and its file name without the extension, unique over
the archive.
"""


def frame_id(night, stem):
    """'2025-03-02/light_R_0001': how a frame is named everywhere."""
    return f"{night}/{stem}"


def split_frame_id(name):
    """(night, stem) of a frame id."""
    night, sep, stem = name.partition("/")
    if not sep or not night or not stem:
        raise ValueError(f"{name!r} is not a frame id '<night>/<stem>'")
    return night, stem


def _under(results, relative):
    return f"{str(results).rstrip('/')}/{relative}" if results else relative


def master_file(kind, key=""):
    """A master's file name: bias.fits, dark_<exposure>s.fits, flat_<filter>.fits."""
    if kind == "bias":
        return "bias.fits"
    if kind == "dark":
        return f"dark_{key}s.fits"
    if kind == "flat":
        return f"flat_{key}.fits"
    raise ValueError(f"no master of kind {kind!r}")


def calib(results, night, name=""):
    """A night's calibration folder, or a file in it (masters, tables)."""
    return _under(results, f"calib/{night}" + (f"/{name}" if name else ""))


def master(results, night, kind, key="", camera=""):
    """A master: calib/<night>/<file>, or calib/<night>/<camera>/<file> for a
    night's second camera or set point (policy: the main one keeps the plain
    name, so a one-camera night's masters are named as they always were)."""
    return calib(results, night, f"{camera}/" * bool(camera) + master_file(kind, key))


def bad_pixels(results, night, extension=".fits"):
    """The night's bad-pixel map (calibrate job), or its PNG (".png")."""
    return calib(results, night, f"bad_pixels{extension}")


def master_preview(results, night, kind, key="", camera=""):
    """The PNG drawn beside a master."""
    return master(results, night, kind, key, camera).removesuffix(".fits") + ".png"


def calibrated_dir(results, night):
    return _under(results, f"calibrated/{night}")


def calibrated(results, night, stem):
    return f"{calibrated_dir(results, night)}/{stem}.fits"


def calibrated_channel(results, night, stem, channel):
    """One demosaiced colour channel (R, G or B) of a colour frame."""
    return f"{calibrated_dir(results, night)}/{stem}_{channel}.fits"


def catalogs_dir(results, night):
    return _under(results, f"catalogs/{night}")


def catalog(results, night, stem):
    return f"{catalogs_dir(results, night)}/{stem}.ecsv"


def registered_dir(results, night, group):
    """The folder one register job writes: a night's frames of one stack."""
    return _under(results, f"registered/{night}/{group}")


def registered(results, group, frame):
    """A registered frame of stack ``group``, from its frame id."""
    night, stem = split_frame_id(frame)
    return f"{registered_dir(results, night, group)}/{stem}.fits"


def stack(results, group, name=""):
    """A stack's folder, or a file in it ('median.fits', 'frames.ecsv')."""
    return _under(results, f"stacks/{group}" + (f"/{name}" if name else ""))


def reference_lock(reference_json):
    """reference.lock, beside a stack's reference.json: the first choice."""
    return str(reference_json).removesuffix("reference.json") + "reference.lock"


def header_cache(results):
    """The folder of the inventory's header cache (one JSON a night)."""
    return _under(results, ".cache/headers")


#: Extensions of products; a job's log and benchmark are named without them.
PRODUCT_EXTENSIONS = (".fits", ".ecsv", ".json", ".png")


def _job_record(results, folder, product, step, extension):
    for known in PRODUCT_EXTENSIONS:
        if product.endswith(known):
            product = product[: -len(known)]
            break
    return _under(results, f"{folder}/{product}{f'_{step}' if step else ''}{extension}")


def log(results, product, step=None):
    """The log of the job that makes ``product`` (a path relative to
    results): logs/<product without extension>[_<step>].log; ``step`` tells
    apart two jobs on one product (a stack and its preview)."""
    return _job_record(results, "logs", product, step, ".log")


def benchmark_of_log(results, log_path):
    """The timing file of the job whose log is ``log_path`` (a :func:`log`):
    benchmarks/ in place of logs/, .tsv for .log."""
    relative = str(log_path)[len(_under(results, "logs/")) :]
    return _under(results, f"benchmarks/{relative.removesuffix('.log')}.tsv")
