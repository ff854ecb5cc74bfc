import json
import subprocess

from blender.pinned_env import STAMP_FILE, ensure_env


def test_the_environment_is_made_once_then_reused(tmp_path):
    made = ensure_env(tmp_path / "env", [])
    assert made.created and made.python.exists()
    out = subprocess.run(
        [str(made.python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
    )
    assert out.stdout.strip() == str((tmp_path / "env").absolute())  # its own prefix: a real venv
    marker = made.directory / "kept.txt"
    marker.write_text("a file left in the environment")
    again = ensure_env(tmp_path / "env", [])
    assert not again.created and again.python == made.python
    assert marker.exists()  # reused, not made anew
    assert json.loads((made.directory / STAMP_FILE).read_text())["requirements"] == []


def test_a_half_made_or_differently_pinned_environment_is_made_again(tmp_path):
    env = ensure_env(tmp_path / "env", [])
    (env.directory / "kept.txt").write_text("x")
    stamp = env.directory / STAMP_FILE
    spec = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**spec, "requirements": ["llm-blender==0.0.1"]}))
    remade = ensure_env(tmp_path / "env", [])
    assert remade.created and not (env.directory / "kept.txt").exists()
    stamp.unlink()  # as after an install killed halfway: the stamp is written last
    assert ensure_env(tmp_path / "env", []).created
    assert not ensure_env(tmp_path / "env", []).created
