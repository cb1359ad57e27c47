"""Load a file of the project that is not in a package (data/build_pairs.py, training/train.py, eval/evaluate.py,
benchmarks, integrations) so tests can call its ``main(argv)`` in-process."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
