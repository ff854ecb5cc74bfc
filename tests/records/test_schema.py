import gzip
import json

import pytest

from blender.records import DataPathError, RecordError, load_candidates, load_hf_split, read_jsonl
from tests.conftest import make_raw_record, write_jsonl


def test_reads_valid_records_and_keeps_extra_fields(tmp_path):
    raw = make_raw_record(0)
    raw["source"] = "helpful_base"
    (record,) = read_jsonl(write_jsonl(tmp_path / "a.jsonl", [raw]))
    assert record.id == "test/0" and record.models == ["m0", "m1", "m2", "m3"]
    assert record.candidates[2].scores == {"gpt4_pref": 0.6, "other": -2.0}
    assert record.cmp_results["m0,m1"] == "B is better"
    assert record.to_dict() == raw


def test_reads_gzip(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(make_raw_record(0)) + "\n")
    assert len(read_jsonl(path)) == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("candidates"), "record has no 'candidates'"),
        (lambda r: r.pop("output"), "record has no 'output'"),
        (lambda r: r.update(instruction=3), "'instruction' must be a string"),
        (lambda r: r["candidates"][1].pop("text"), "candidates[1]: candidate has no 'text'"),
        (
            lambda r: r["candidates"][2]["scores"].update(gpt4_pref="high"),
            "scores['gpt4_pref'] must be a finite number",
        ),
        (lambda r: r["candidates"][2]["scores"].update(gpt4_pref=float("nan")), "must be a finite number"),
        (lambda r: r["candidates"][1].update(model="m0"), "candidate models must be unique"),
        (lambda r: r.update(cmp_results={"m0,m1": "A wins"}), "expected one of"),
        (lambda r: r.update(cmp_results={"m0,zz": "A is better"}), "both among the candidates"),
        (lambda r: r.update(candidates=[]), "'candidates' must be a non-empty list"),
    ],
)
def test_bad_record_names_file_line_and_problem(tmp_path, mutate, message):
    rows = [make_raw_record(0), make_raw_record(1), make_raw_record(2)]
    mutate(rows[1])
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(RecordError) as caught:
        read_jsonl(path)
    assert f"{path}:2" in str(caught.value)
    assert message in str(caught.value)


def test_invalid_json_and_empty_lines_and_repeated_ids(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(make_raw_record(0)) + "\n{not json\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:2: not valid JSON"):
        read_jsonl(path)
    path.write_text(json.dumps(make_raw_record(0)) + "\n\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:2: empty line"):
        read_jsonl(path)
    write_jsonl(path, [make_raw_record(0), make_raw_record(0)])
    with pytest.raises(RecordError, match=r"bad.jsonl:2: id 'test/0' repeats line 1"):
        read_jsonl(path)


def test_hub_style_cmp_results_string_and_null(tmp_path):
    with_labels, without = make_raw_record(0), make_raw_record(1, with_cmp=False)
    with_labels["cmp_results"] = json.dumps(with_labels["cmp_results"])
    without["cmp_results"] = "null"
    a, b = read_jsonl(write_jsonl(tmp_path / "hub.jsonl", [with_labels, without]))
    assert a.cmp_results["m2,m3"] == "B is better" and b.cmp_results is None


def test_datasets_path_reads_the_hub_release_format(tmp_path):
    # load_hf_split is the hub loader; with the "json" builder it runs the same code on a local file.
    rows = [make_raw_record(i) for i in range(3)]
    for row in rows:
        row["cmp_results"] = json.dumps(row["cmp_results"])
    rows[2]["cmp_results"] = "null"
    path = write_jsonl(tmp_path / "test.jsonl", rows)
    records = load_hf_split("json", "train", data_files=str(path))
    assert [r.id for r in records] == ["test/0", "test/1", "test/2"]
    assert records[0].cmp_results["m0,m3"] == "B is better" and records[2].cmp_results is None
    assert records[1].candidates[3].scores["gpt4_pref"] == pytest.approx(0.8)


def test_datasets_path_names_the_bad_row(tmp_path):
    rows = [make_raw_record(i) for i in range(3)]
    rows[1]["cmp_results"] = json.dumps({"m0,m1": "maybe"})
    for row in (rows[0], rows[2]):
        row["cmp_results"] = json.dumps(row["cmp_results"])
    path = write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(RecordError, match=r"\[train\] row 1 \(id 'test/1'\).*'maybe'"):
        load_hf_split("json", "train", data_files=str(path))


def test_unreachable_hub_says_how_to_use_local_files():
    with pytest.raises(DataPathError, match="data.path"):
        load_hf_split("json", "train", data_files="/nonexistent/file.jsonl")


def test_missing_folder_and_split(tmp_path, small_dataset):
    with pytest.raises(DataPathError, match="no such data folder"):
        load_candidates(tmp_path / "nowhere")
    with pytest.raises(
        DataPathError, match=r"no test.jsonl or test.jsonl.gz \(found: \['train.jsonl', 'val.jsonl'\]\)"
    ):
        load_candidates(small_dataset, splits=("test",))
    train, val = load_candidates(small_dataset, limit=5)
    assert len(train) == 5 and len(val) == 5
