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


def test_a_failed_rename_leaves_no_temporary_file_and_the_target_as_it_was(tmp_path):
    # A directory where the file should go: the final rename fails after the data was written and synced.
    for name, write in (
        ("a.json", lambda p: write_json_atomic(p, {"x": 1})),
        ("b.jsonl", lambda p: write_jsonl_atomic(p, [{"x": 1}])),
    ):
        target = tmp_path / name
        target.mkdir()
        (target / "kept.txt").write_text("old")
        try:
            write(target)
        except OSError:
            pass
        else:
            raise AssertionError(f"writing over the folder {target} did not fail")
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".{name}.")) == []
        assert (target / "kept.txt").read_text() == "old"
