"""Which modules of this package a rule's script runs, so that Snakemake can
rerun the rule when one of them changes.

Rules run their scripts from a `run:` block (ccdreduce.workers), so Snakemake
tracks neither the script nor the modules it imports; rules therefore carry a
fingerprint of the script and those modules as a parameter (`params.code`),
and Snakemake's params trigger reruns them when it changes.
The modules are found by reading the imports, transitively, with no module
executed. (A parameter, not input files: ten more inputs per job cost a dry
run of a large archive several seconds.)
"""

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@cache
def package_imports(path):
    """Package modules imported by one file, as module names (each file
    parsed once per process: ten rule scripts share most modules)."""
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.module:  # from .stars import detect
                found.add(node.module.split(".")[0])
            elif node.level:  # from . import stars
                found.update(alias.name for alias in node.names)
            elif node.module == PACKAGE.name:  # from ccdreduce import stars
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith(PACKAGE.name + "."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE.name + "."):
                    found.add(alias.name.split(".")[1])
    return {name for name in found if (PACKAGE / f"{name}.py").exists()}


@cache
def modules_of(script):
    """Sorted paths of the package modules ``script`` runs (with __init__)."""
    todo, seen = list(package_imports(script)), {"__init__"}
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(package_imports(PACKAGE / f"{name}.py"))
    return tuple(sorted(str(PACKAGE / f"{name}.py") for name in seen))


@cache
def fingerprint(script):
    """A short hash of ``script`` and the package modules it runs (names and text)."""
    digest = hashlib.sha256()
    for path in (script, *modules_of(script)):
        digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()[:16]
