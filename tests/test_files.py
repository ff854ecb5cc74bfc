import os
import stat

from blender.files import write_dir_atomic, write_json_atomic, write_jsonl_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_umask_mode_not_the_temp_files_0600(tmp_path):
    umask = os.umask(0o022)
    try:
        assert _mode(write_json_atomic(tmp_path / "a.json", {"x": 1})) == 0o644
        assert _mode(write_jsonl_atomic(tmp_path / "b.jsonl", [{"x": 1}])) == 0o644
        folder = write_dir_atomic(tmp_path / "d", lambda d: (d / "f.txt").write_text("x"))
        assert _mode(folder) == 0o755
    finally:
        os.umask(umask)
