"""Tests of pipelines/schema.py: vocabularies, schemes as data, their binding."""

import json

import numpy as np
import pytest

from pipelines import schema

LIP_NAMES = ["Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress",
             "Coat", "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm",
             "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe"]
LIP4 = {"name": "lip4", "classes": [
    {"name": "head", "parts": ["Hat", "Hair", "Sunglasses", "Face"]},
    {"name": "body", "parts": ["Upper-clothes", "Dress", "Coat", "Jumpsuits", "Scarf"]},
    {"name": "arms", "parts": ["Glove", "Left-arm", "Right-arm"]},
    {"name": "legs", "parts": ["Socks", "Pants", "Skirt", "Left-leg", "Right-leg",
                               "Left-shoe", "Right-shoe"]}]}


def test_vocabulary_file_as_text_and_as_json(tmp_path):
    text = tmp_path / "lip.txt"
    text.write_bytes(("\ufeff" + "\r\n".join(LIP_NAMES) + "\r\n\r\n").encode("utf-8"))
    vocabulary = schema.read_vocabulary(str(text))
    assert vocabulary.name == "lip" and vocabulary.part_names == tuple(LIP_NAMES[1:])
    assert vocabulary.num_values == 20 and vocabulary.id_of("Face") == 13
    as_list = tmp_path / "lip.json"
    as_list.write_text(json.dumps(LIP_NAMES))
    as_dict = tmp_path / "lip_dict.json"
    as_dict.write_text(json.dumps({str(i): n for i, n in reversed(list(enumerate(LIP_NAMES)))}))
    assert schema.read_vocabulary(str(as_list)) == vocabulary
    assert schema.read_vocabulary(str(as_dict)) == vocabulary


@pytest.mark.parametrize("content, problem", [
    ("background\n\nhead\n", "line 2 is blank"),
    ("background\nhead\nhead\n", "'head' names values 1 and 2"),
    ("background\n", "names no part"),
    ('{"0": "bg", "2": "head"}', "without a gap"),
    ('{"zero": "bg"}', "not a label value"),
])
def test_bad_vocabulary_files_are_refused_naming_the_file(tmp_path, content, problem):
    path = tmp_path / ("v.json" if content.startswith("{") else "v.txt")
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as err:
        schema.read_vocabulary(str(path))
    assert str(path) in str(err.value)


def test_utf16_vocabulary_is_refused(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes("background\nhead\n".encode("utf-16"))
    with pytest.raises(ValueError, match="UTF-16"):
        schema.read_vocabulary(str(path))


def test_flip_pairs_by_name():
    assert schema.PASCAL_PART.flip_pairs() == schema.LEFT_RIGHT_PAIRS
    np.testing.assert_array_equal(schema.PASCAL_PART.flip_permutation(),
                                  schema.flip_permutation())
    lip = schema.Vocabulary(LIP_NAMES[1:], name="lip")
    assert set(lip.flip_pairs()) == {("Left-arm", "Right-arm"), ("Left-leg", "Right-leg"),
                                     ("Left-shoe", "Right-shoe")}
    table = lip.flip_permutation()
    assert table[lip.id_of("Left-arm")] == lip.id_of("Right-arm")
    assert table[lip.id_of("Right-shoe")] == lip.id_of("Left-shoe")
    assert table[lip.id_of("Face")] == lip.id_of("Face") and table[0] == 0
    # A Pascal-Part subset keeps the Pascal-Part pairs it holds; "leftover" is no side.
    mixed = schema.Vocabulary(["lhand", "rhand", "torso", "leftover", "rightover"])
    assert mixed.flip_pairs() == (("lhand", "rhand"),)


def test_a_json_scheme_binds_to_its_vocabulary(tmp_path):
    path = tmp_path / "lip4.json"
    path.write_text(json.dumps(LIP4))
    scheme = schema.load_scheme(str(path))
    assert scheme.vocabulary is None and scheme.class_names == (
        "background", "head", "body", "arms", "legs")
    with pytest.raises(ValueError, match="not bound"):
        scheme.lookup_table()
    lip = schema.Vocabulary(LIP_NAMES[1:], name="lip")
    table = scheme.bind(lip).lookup_table()
    assert table.shape == (20,) and table[0] == 0
    assert table[lip.id_of("Face")] == 1 and table[lip.id_of("Right-shoe")] == 4
    assert table[lip.id_of("Glove")] == 3
    assert schema.scheme_from_json(scheme.to_json()).same_merge(scheme)


def test_a_scheme_naming_an_unknown_part_is_refused_naming_it():
    lip = schema.Vocabulary(LIP_NAMES[1:], name="lip")
    bad = dict(LIP4, classes=LIP4["classes"] + [{"name": "tail", "parts": ["Tail"]}])
    scheme = schema.scheme_from_json(bad, source="bad.json")
    with pytest.raises(ValueError, match=r"names 1 part\(s\) that the vocabulary lip") as err:
        scheme.bind(lip)
    assert "'Tail'" in str(err.value)
    # A built-in names Pascal-Part parts: refused over LIP's vocabulary.
    with pytest.raises(ValueError, match="'head', 'leye'"):
        schema.get_scheme("all4").bind(lip)


@pytest.mark.parametrize("content, problem", [
    ({"classes": []}, "non-empty list"),
    ({"classes": [{"name": "a", "parts": ["x"]}, {"name": "b", "parts": ["x"]}]},
     "part 'x' is in classes 'a' and 'b'"),
    ({"classes": [{"name": "other", "parts": ["x"]}]}, "reserved"),
    ({"classes": [{"name": "a", "parts": []}]}, "names no part"),
    ({"classes": [{"name": "a", "parts": ["x"]}], "other_region": "yes"}, "true or false"),
    ({"classes": [{"name": "a", "parts": ["x"]}], "colour": 1}, "unknown keys"),
])
def test_bad_scheme_files_are_refused_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=problem) as err:
        schema.load_scheme(str(path))
    assert str(path) in str(err.value)


def test_builtins_are_unchanged_data():
    for name, scheme in schema.SCHEMES.items():
        assert scheme.vocabulary == schema.PASCAL_PART
        again = schema.scheme_from_json(scheme.to_json()).bind(schema.PASCAL_PART)
        np.testing.assert_array_equal(again.lookup_table(), scheme.lookup_table())
        assert again.class_names == scheme.class_names
    # The model.json of a run of an earlier version names only the built-in.
    assert schema.scheme_from_info({"parts": "head"}) is schema.SCHEMES["head"]
    with pytest.raises(ValueError, match="unknown part scheme 'arms'"):
        schema.load_scheme("arms")
