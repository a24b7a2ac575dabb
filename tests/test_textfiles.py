"""Every text file the project reads: UTF-8 with or without a byte-order mark, LF or CRLF.

Issue 15 case 5: a split list saved with a byte-order mark lost its first id in the
converter; train.py refused such a --labeled_ids_file. Each reader of a user's text
file is tried here with the same content in every encoding a Windows or Unix editor
writes (pipelines/textfiles.py is the one reader they share), and against the
encodings it must refuse with a message naming the file.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from pipelines import textfiles

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))

# name: how a list of lines is saved.
ENCODINGS = {
    "lf": lambda lines: "\n".join(lines).encode() + b"\n",
    "crlf": lambda lines: "\r\n".join(lines).encode() + b"\r\n",
    "bom_lf": lambda lines: b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n",
    "bom_crlf": lambda lines: b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n",
    "bom_cr_no_final_newline": lambda lines: b"\xef\xbb\xbf" + "\r".join(lines).encode(),
}


def _save(path, lines, encoding):
    path = pathlib.Path(path)
    path.write_bytes(ENCODINGS[encoding](lines))
    return str(path)


# === The reader ===

@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_lines_are_the_same_in_every_encoding(tmp_path, encoding):
    path = _save(tmp_path / "ids.txt", ["2008_000652", "", "  2008_000700  ", "été"],
                 encoding)
    assert textfiles.read_list(path) == ["2008_000652", "2008_000700", "été"]
    assert textfiles.read_lines(path)[:4] == ["2008_000652", "", "  2008_000700  ", "été"]


def test_json_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": [1, 2]}).encode())
    assert textfiles.read_json(str(path)) == {"a": [1, 2]}


@pytest.mark.parametrize("data, words", [
    ("2008_000652\n".encode("utf-16"), "is UTF-16 (it starts with the byte-order mark FF FE)"),
    (b"\xfe\xff\x00a", "is UTF-16 (it starts with the byte-order mark FE FF)"),
    ("a\n".encode("utf-32"), "is UTF-32"),
    (b"2008_000652\n2008_\xe9t\xe9\n", "is not UTF-8 text: byte 0xE9 at offset 17 (line 2)"),
])
def test_other_encodings_are_refused_naming_the_file(tmp_path, data, words):
    path = tmp_path / "ids.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError) as e:
        textfiles.read_list(str(path))
    assert str(path) in str(e.value) and words in str(e.value), str(e.value)


# === Its users ===

@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_split_list_of_the_converter(pascal_part_dir, tmp_path, encoding):
    from tools.make_tfrecords import convert

    ids = ["2008_000652", "2008_000700", "2010_000145"]  # the last has no person
    split = _save(tmp_path / "ids.txt", ids, encoding)
    manifest = convert(pascal_part_dir=str(pascal_part_dir),
                       images_dir=str(pascal_part_dir), output_dir=str(tmp_path / "out"),
                       split_list=split, progress=False)
    assert [e["id"] for e in manifest["examples"]] == ids[:2]
    assert manifest["skipped"] == [{"id": "2010_000145", "kind": "no person",
                                    "reason": "no person"}]


def test_split_list_in_utf16_is_refused(pascal_part_dir, tmp_path):
    from tools.make_tfrecords import ArgumentError, convert

    split = tmp_path / "ids.txt"
    split.write_bytes("2008_000652\r\n".encode("utf-16"))
    with pytest.raises(ArgumentError, match=r"--split_list: cannot read .*ids\.txt .*is "
                                            r"UTF-16.*save it as UTF-8"):
        convert(pascal_part_dir=str(pascal_part_dir), images_dir=str(pascal_part_dir),
                output_dir=str(tmp_path / "out"), split_list=str(split), progress=False)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from pipeline_helpers import synthetic_arrays, write_split

    directory = tmp_path_factory.mktemp("records")
    arrays = [synthetic_arrays(f"img_{i:02d}", seed=i) for i in range(6)]
    write_split(directory, "train", arrays, num_shards=2)
    return directory


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_labeled_ids_file_of_train(records, tmp_path, encoding):
    from coseg_tf import train_lib

    path = _save(tmp_path / "labeled.txt", ["img_03", "img_01"], encoding)
    config = train_lib.TrainConfig(train_data=str(records / "train-*"),
                                   model_dir=str(tmp_path / "run"), init="random",
                                   labeled_ids_file=path, num_labeled=2)
    _, _, labeled = train_lib.validate(config)
    assert labeled == ["img_03", "img_01"]


def test_labeled_ids_file_in_utf16_is_refused(records, tmp_path):
    from coseg_tf import train_lib

    path = tmp_path / "labeled.txt"
    path.write_bytes("img_03\n".encode("utf-16"))
    config = train_lib.TrainConfig(train_data=str(records / "train-*"),
                                   model_dir=str(tmp_path / "run"), init="random",
                                   labeled_ids_file=str(path))
    with pytest.raises(train_lib.ConfigError, match=r"^--labeled_ids_file: .*labeled\.txt "
                                                    r"is UTF-16"):
        train_lib.validate(config)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_manifest_beside_the_shards(records, tmp_path, encoding):
    from pipeline_helpers import ids_in_file_order, synthetic_arrays, write_split
    from pipelines import streams

    arrays = [synthetic_arrays(f"m_{i}", seed=i) for i in range(4)]
    write_split(tmp_path, "val", arrays, num_shards=2, manifest=["m_0", "m_2", "m_1", "m_3"])
    manifest = tmp_path / "val.manifest.json"
    _save(manifest, [manifest.read_text()], encoding)
    # The manifest's ids are used (a scan would give the records' own order).
    assert streams.read_ids(str(tmp_path / "val-*")) == ["m_0", "m_2", "m_1", "m_3"]
    assert ids_in_file_order(arrays, 2) == ["m_0", "m_2", "m_1", "m_3"]


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_class_names_and_model_json_of_an_export(tmp_path, encoding):
    from coseg_tf import evaluation

    export = tmp_path / "export" / "1"
    (export / "assets").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"")  # validate() reads the assets only
    names = ["background", "head", "other"]
    _save(export / "assets" / "class_names.txt", names, encoding)
    _save(export / "assets" / "model.json",
          [json.dumps({"parts": "head", "human_region": "instance"})], encoding)
    resolved = evaluation.validate(evaluation.EvalConfig(
        eval_data=str(records_dir(tmp_path)), saved_model=str(tmp_path / "export")))
    assert resolved.saved_class_names == names
    assert resolved.scheme.name == "head" and resolved.human_region == "instance"


def records_dir(tmp_path):
    from pipeline_helpers import synthetic_arrays, write_split

    directory = tmp_path / "eval_records"
    directory.mkdir()
    write_split(directory, "val", [synthetic_arrays("v_0")], num_shards=1)
    return directory / "val-*"


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_recipe_flagfile(tmp_path, encoding):
    """A recipe saved by any editor gives the flags absl gives for the plain file."""
    from absl import flags as absl_flags

    from flags import flagfiles
    from tools import experiments

    recipe = (REPO / "recipes" / "cpu_small.flags").read_text().splitlines()
    saved = _save(tmp_path / "recipe.flags",
                  recipe + ["--flagfile=" + str(tmp_path / "inner.flags")], encoding)
    _save(tmp_path / "inner.flags", ["# nested", "--steps=7"], encoding)
    plain = tmp_path / "plain.flags"
    plain.write_text("\n".join(recipe + ["--steps=7"]) + "\n")
    absl_view = absl_flags.FlagValues().read_flags_from_files(
        ["--method=coseg", f"--flagfile={plain}", "--verbose=0"])
    assert flagfiles.expand(["--method=coseg", f"--flagfile={saved}", "--verbose=0"]) == \
        absl_view
    # The demo's and the sweep's own reading of a recipe.
    only_recipe = _save(tmp_path / "only.flags", recipe, encoding)
    plain_recipe = tmp_path / "plain_only.flags"
    plain_recipe.write_text("\n".join(recipe) + "\n")
    assert experiments.read_flagfile(only_recipe) == \
        experiments.read_flagfile(str(plain_recipe))


def test_train_py_reads_a_recipe_with_a_byte_order_mark(tmp_path):
    recipe = (REPO / "recipes" / "cpu_small.flags").read_text().splitlines()
    saved = _save(tmp_path / "recipe.flags", recipe, "bom_crlf")
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"--flagfile={saved}",
         f"--train_data={tmp_path}/nothing-*", f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env=ENV, timeout=300, cwd=REPO)
    # The flags parse; the run stops at the first real problem, the missing data.
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "train.py: error: --train_data=" in proc.stderr and "nothing-*" in proc.stderr
