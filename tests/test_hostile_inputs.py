"""The converter (tools/make_tfrecords.py) against hostile inputs made from the real fixtures.

One table of broken inputs, each a copy of a real Pascal-Part image broken one way,
all placed beside the untouched fixtures in one input directory:
- with --on_error=skip the run succeeds, every good image is written and the manifest
  lists every broken id with a reason naming its file and the problem;
- with --on_error=fail each broken id alone stops the run with that message, a non-zero
  exit and no output file.
Then: a very large image (8000 x 8000), the same run twice into the same directory, and
SIGKILL to the converter's process group in the middle of a run.

Expected values come from the fixtures' README (which ids hold persons) and from the
table, never from the converter.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

from conftest import FIXTURES
from pipelines import records
from pipelines import streams
from tools import make_tfrecords
from tools.make_tfrecords import BadInputError, convert

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))

# From ../shared/fixtures/README.md: the fixture ids that hold persons.
PERSON_IDS = ("2008_000652", "2008_000700", "2008_000726", "2008_000939", "2008_003228",
              "2009_001103", "2010_002526", "2010_005243")
SOURCE = "2008_000939"  # 500 x 375, one person (with parts) and a car: the broken copies
NON_UTF8 = b"bad_non_utf8_\xff\xfe"  # a file-name stem that is not UTF-8


# === Ways to break a copy of SOURCE ===
# Each takes (mat path, jpg path) of the copy, as bytes paths, and breaks it in place.

def _zero_byte_jpeg(mat, jpg):
    open(jpg, "wb").close()


def _truncated_jpeg(mat, jpg):
    data = open(jpg, "rb").read()
    open(jpg, "wb").write(data[:len(data) // 2])


def _missing_jpeg(mat, jpg):
    os.remove(jpg)


def _png_named_jpg(mat, jpg):
    with Image.open(jpg) as im:
        im.convert("RGB").save(jpg, format="PNG")  # same pixels, same size, PNG bytes


def _truncated_mat(mat, jpg):
    data = open(mat, "rb").read()
    open(mat, "wb").write(data[:len(data) // 3])


def _mat_without_anno(mat, jpg):
    scipy.io.savemat(mat, {"annotation": np.eye(3)})


def _object_without_mask(mat, jpg):
    old = scipy.io.loadmat(mat)["anno"][0, 0]["objects"]
    objects = np.zeros(old.shape, dtype=[("class", "O"), ("class_ind", "O"), ("parts", "O")])
    for i in range(old.shape[1]):
        objects[0, i] = (old[0, i]["class"], old[0, i]["class_ind"], old[0, i]["parts"])
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (np.array(["x"]), objects)
    scipy.io.savemat(mat, {"anno": anno})


def _edit_objects(mat, edit):
    loaded = scipy.io.loadmat(mat)
    edit(loaded["anno"][0, 0]["objects"])
    scipy.io.savemat(mat, {"anno": loaded["anno"]})


def _person(objects):
    return next(o for o in objects[0] if str(o["class"][0]) == "person")


def _wrong_size_mask(mat, jpg):
    def edit(objects):
        person = _person(objects)
        person["parts"][0, 0]["mask"] = person["parts"][0, 0]["mask"][:, :-10]
    _edit_objects(mat, edit)


def _unknown_part_name(mat, jpg):
    def edit(objects):
        _person(objects)["parts"][0, 0]["part_name"] = np.array(["lelbow"])
    _edit_objects(mat, edit)


def _non_utf8_file_name(mat, jpg):
    pass  # the copy's name is the problem (see HOSTILE)


def _too_large_image(mat, jpg):
    # 8000 x 8000, mostly one colour: a small file, 64 megapixels once decoded. The
    # .mat stays the 500 x 375 one: the size check comes before the .mat is read.
    image = Image.new("RGB", (8000, 8000), (120, 130, 140))
    image.paste((200, 60, 60), (3000, 2000, 5000, 7000))
    image.save(jpg, format="JPEG", quality=80)


# name: (breaker, the file its reason names ("mat" or "jpg"), words of the reason)
HOSTILE = {
    "zero_byte_jpeg": (_zero_byte_jpeg, "jpg", "empty file (0 bytes)"),
    "truncated_jpeg": (_truncated_jpeg, "jpg", "corrupt or truncated JPEG"),
    "missing_jpeg": (_missing_jpeg, "jpg", "missing JPEG"),
    "png_named_jpg": (_png_named_jpg, "jpg", "not a JPEG image (PIL reads it as PNG)"),
    "truncated_mat": (_truncated_mat, "mat", "truncated or malformed"),
    "mat_without_anno": (_mat_without_anno, "mat", "no 'anno' struct"),
    "object_without_mask": (_object_without_mask, "mat", "objects have no 'mask' field"),
    "wrong_size_mask": (_wrong_size_mask, "mat",
                        "mask is 375x490 (HxW), but the image is 375x500"),
    "unknown_part_name": (_unknown_part_name, "mat", "unknown part name 'lelbow'"),
    "non_utf8_file_name": (_non_utf8_file_name, "mat", "file name is not valid UTF-8"),
    "too_large_image": (_too_large_image, "jpg",
                        "image is 8000x8000 (WxH), 64.0 megapixels, more than "
                        "--max_pixels=25000000"),
}


def _stem(case):
    """The id of the broken copy, as the bytes of its file names."""
    return NON_UTF8 if case == "non_utf8_file_name" else f"bad_{case}".encode()


def _case_id(case):
    """The id as the converter sees it (os.listdir decodes undecodable bytes as
    surrogates), and as the manifest gives it back."""
    return os.fsdecode(_stem(case))


def _named_path(directory, case):
    _, kind, _ = HOSTILE[case]
    return os.fsdecode(os.path.join(os.fsencode(directory), _stem(case) + f".{kind}".encode()))


def _printable(path):
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return repr(os.fsencode(path))


def _make_inputs(pascal_part_dir, root, cases):
    """root/in: every fixture untouched + a broken copy of SOURCE for each case."""
    directory = root / "in"
    directory.mkdir()
    for path in pascal_part_dir.iterdir():
        if path.suffix in (".jpg", ".mat"):
            shutil.copy(path, directory)
    for case in cases:
        breaker = HOSTILE[case][0]
        base = os.path.join(os.fsencode(directory), _stem(case))
        mat, jpg = base + b".mat", base + b".jpg"
        shutil.copy(pascal_part_dir / f"{SOURCE}.mat", mat)
        shutil.copy(pascal_part_dir / f"{SOURCE}.jpg", jpg)
        breaker(mat, jpg)
    return directory


def _file_names(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tools.make_tfrecords", *args],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=timeout)


def _read_ids(out_dir, split="train"):
    manifest = json.loads((out_dir / f"{split}.manifest.json").read_text())
    ids = []
    for shard in manifest["shards"]:
        for record in tf.data.TFRecordDataset(str(out_dir / shard["file"])):
            ids.append(records.parse_example(record.numpy())["id"])
    return ids, manifest


# === The table, all at once ===

@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    if not FIXTURES.is_dir():  # conftest's pascal_part_dir, for a module-scoped fixture
        pytest.skip(f"real Pascal-Part fixtures not found at {FIXTURES}")
    return _make_inputs(FIXTURES, tmp_path_factory.mktemp("hostile"), sorted(HOSTILE))


def test_skip_writes_every_good_image_and_lists_every_broken_one(hostile_dir, tmp_path):
    out = tmp_path / "out"
    res = _cli(f"--pascal_part_dir={hostile_dir}", f"--images_dir={hostile_dir}",
               f"--output_dir={out}", "--num_shards=3", "--num_workers=2", "--on_error=skip")
    assert res.returncode == 0, res.stderr[-3000:]
    ids, manifest = _read_ids(out)
    assert sorted(ids) == sorted(PERSON_IDS)  # every good image, each once
    bad = {s["id"]: s for s in manifest["skipped"] if s["kind"] == "bad input"}
    assert sorted(bad) == sorted(_case_id(c) for c in HOSTILE)
    for case, (_, _, words) in HOSTILE.items():
        reason = bad[_case_id(case)]["reason"]
        assert _printable(_named_path(hostile_dir, case)) in reason, (case, reason)
        assert words in reason, (case, reason)
        # The warning line on stderr says the same.
        assert words in res.stderr, case
    no_person = [s["id"] for s in manifest["skipped"] if s["kind"] == "no person"]
    assert len(no_person) == 10  # the fixtures without persons, not "bad input"
    assert manifest["counts"]["skipped_bad_input"] == len(HOSTILE)
    assert f"bad input: {len(HOSTILE)})" in res.stderr
    # The manifest is plain JSON (the non-UTF-8 id is escaped), and round-trips.
    text = (out / "train.manifest.json").read_text(encoding="ascii")
    assert json.loads(text) == manifest


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_fail_names_the_file_and_leaves_no_output(pascal_part_dir, tmp_path, case):
    directory = _make_inputs(pascal_part_dir, tmp_path, [case])
    out = tmp_path / "out"
    out.mkdir()
    (out / "val-00000-of-00001.tfrecord").write_bytes(b"another split's shard")
    with pytest.raises(BadInputError) as e:
        convert(pascal_part_dir=str(directory), images_dir=str(directory),
                output_dir=str(out), num_shards=2, on_error="fail", progress=False)
    _, _, words = HOSTILE[case]
    assert _printable(_named_path(directory, case)) in str(e.value)
    assert words in str(e.value)
    assert _file_names(out) == ["val-00000-of-00001.tfrecord"]


def test_fail_from_the_command_line(hostile_dir, tmp_path):
    out = tmp_path / "new_dir"
    res = _cli(f"--pascal_part_dir={hostile_dir}", f"--images_dir={hostile_dir}",
               f"--output_dir={out}", "--num_shards=2", "--num_workers=2", "--on_error=fail")
    assert res.returncode == 1
    assert "make_tfrecords: error:" in res.stderr and str(hostile_dir) in res.stderr
    assert _file_names(out) == []


def test_id_in_the_split_list_without_files(pascal_part_dir, tmp_path):
    split = tmp_path / "ids.txt"
    split.write_text("2008_000652\n2099_999999\n")
    manifest = convert(pascal_part_dir=str(pascal_part_dir), images_dir=str(pascal_part_dir),
                       output_dir=str(tmp_path / "out"), split_list=str(split), progress=False)
    (skipped,) = manifest["skipped"]
    assert skipped["id"] == "2099_999999" and "no files for id" in skipped["reason"]
    assert str(pascal_part_dir / "2099_999999.mat") in skipped["reason"]


# === A very large image ===

def _large_example(directory, size=8000, name="big_000001"):
    """An 8000 x 8000 image with one person (head + torso parts), .mat included.

    Coordinates scale with `size` (a small copy converts in a moment)."""
    def c(v):  # a coordinate of the 8000 x 8000 layout, at this size
        return v * size // 8000

    image = Image.new("RGB", (size, size), (90, 110, 130))
    image.paste((220, 180, 150), (c(3000), c(1000), c(5000), c(7500)))
    image.save(directory / f"{name}.jpg", format="JPEG", quality=80)
    person = np.zeros((size, size), np.uint8)
    person[c(1000):c(7500), c(3000):c(5000)] = 1
    head = np.zeros_like(person)
    head[c(1000):c(2000), c(3500):c(4500)] = 1
    torso = np.zeros_like(person)
    torso[c(2000):c(5000), c(3000):c(5000)] = 1
    parts = np.zeros((1, 2), dtype=[("part_name", "O"), ("mask", "O")])
    parts[0, 0] = (np.array(["head"]), head)
    parts[0, 1] = (np.array(["torso"]), torso)
    objects = np.zeros((1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"),
                                      ("parts", "O")])
    objects[0, 0] = (np.array(["person"]), np.array([[15]]), person, parts)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (np.array([name]), objects)
    scipy.io.savemat(directory / f"{name}.mat", {"anno": anno}, do_compression=True)


def test_large_image_is_skipped_by_default_without_reading_it(tmp_path):
    directory = tmp_path / "in"
    directory.mkdir()
    _large_example(directory)
    _large_example(directory, size=80, name="small_000001")  # a split is never empty
    start = time.perf_counter()
    manifest = convert(pascal_part_dir=str(directory), images_dir=str(directory),
                       output_dir=str(tmp_path / "out"), progress=False)
    elapsed = time.perf_counter() - start
    assert [e["id"] for e in manifest["examples"]] == ["small_000001"]
    (skipped,) = manifest["skipped"]
    assert skipped["kind"] == "bad input"
    assert skipped["reason"] == (
        f"{directory / 'big_000001.jpg'}: image is 8000x8000 (WxH), 64.0 megapixels, "
        "more than --max_pixels=25000000 (25 megapixels); raise --max_pixels (0 = no "
        "limit) to convert it")
    assert manifest["arguments"]["max_pixels"] == 25_000_000
    # Header only: neither the 64-megapixel JPEG nor its .mat masks were decoded.
    assert elapsed < 5, elapsed
    with pytest.raises(make_tfrecords.ArgumentError, match="--max_pixels"):
        convert(pascal_part_dir=str(directory), images_dir=str(directory),
                output_dir=str(tmp_path / "out2"), progress=False, max_pixels=-1)


@pytest.mark.slow
def test_large_image_converts_with_no_limit_in_bounded_memory(tmp_path):
    directory = tmp_path / "in"
    directory.mkdir()
    _large_example(directory)
    out = tmp_path / "out"
    # In a child process, so that its peak memory is its own.
    code = ("import resource, sys, time; from tools import make_tfrecords as m; "
            "t = time.perf_counter(); "
            f"m.convert(pascal_part_dir={str(directory)!r}, images_dir={str(directory)!r}, "
            f"output_dir={str(out)!r}, max_pixels=0, progress=False); "
            "print(time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    seconds, peak_kib = res.stdout.split()
    # 64 megapixels: ~25 bytes a pixel at the peak (masks as uint8 and bool, the RGB
    # image, the two painted maps) on top of TensorFlow itself.
    print(f"8000x8000 converted in {float(seconds):.1f} s, peak RSS "
          f"{int(peak_kib) / 2**20:.2f} GiB")
    assert float(seconds) < 120 and int(peak_kib) < 4 * 1024 * 1024, res.stdout
    (serialized,) = [r.numpy() for r in tf.data.TFRecordDataset(
        str(out / "train-00000-of-00001.tfrecord"))]
    ex = records.parse_example(serialized)
    assert (ex["height"], ex["width"]) == (8000, 8000)
    np.testing.assert_allclose(ex["boxes"], [[1000 / 8000, 3000 / 8000, 7500 / 8000,
                                              5000 / 8000]])
    assert ex["parts_fine"][1500, 4000] == 1  # head
    assert ex["parts_fine"][3000, 4000] == 11  # torso
    assert ex["person_mask"][7000, 3500] == 1 and ex["person_mask"][500, 500] == 0


# === Reruns and kills ===

def test_twice_into_the_same_directory_gives_identical_files(pascal_part_dir, tmp_path):
    out = tmp_path / "out"
    kw = dict(pascal_part_dir=str(pascal_part_dir), images_dir=str(pascal_part_dir),
              output_dir=str(out), num_shards=3, progress=False)
    convert(**kw)
    first = {name: (out / name).read_bytes() for name in _file_names(out)}
    convert(**kw)
    second = {name: (out / name).read_bytes() for name in _file_names(out)}
    assert sorted(first) == ["train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
                             "train-00002-of-00003.tfrecord", "train.manifest.json"]
    assert first == second


def _many_ids(pascal_part_dir, directory, copies):
    """`copies` copies of each person fixture, ids p0000_2008_000652 ..."""
    directory.mkdir()
    ids = []
    for k in range(copies):
        for image_id in PERSON_IDS:
            new = f"p{k:04d}_{image_id}"
            for ext in (".mat", ".jpg"):
                os.symlink(pascal_part_dir / f"{image_id}{ext}", directory / f"{new}{ext}")
            ids.append(new)
    return ids


def _gone(pgid, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_sigkill_mid_run_leaves_no_file_a_reader_takes_for_a_shard(pascal_part_dir, tmp_path):
    src = tmp_path / "in"
    ids = _many_ids(pascal_part_dir, src, copies=25)  # 200 images, ~6 s with 2 workers
    out = tmp_path / "out"
    # A complete earlier run (of fewer ids) is in the directory: it must survive intact.
    (tmp_path / "few.txt").write_text("\n".join(ids[:5]))
    (tmp_path / "all.txt").write_text("\n".join(ids))
    common = [f"--pascal_part_dir={src}", f"--images_dir={src}", f"--output_dir={out}",
              "--num_shards=3"]
    assert _cli(*common, f"--split_list={tmp_path / 'few.txt'}").returncode == 0
    before = {name: (out / name).read_bytes() for name in _file_names(out)}

    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.make_tfrecords", *common, "--num_workers=2",
         f"--split_list={tmp_path / 'all.txt'}"],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)  # its own process group: the workers are in it
    try:
        deadline = time.time() + 120
        tmp_dirs = []
        while time.time() < deadline and proc.poll() is None:
            tmp_dirs = [n for n in _file_names(out) if n.startswith(".train.tmp-")]
            shards = [os.path.join(out, d, f) for d in tmp_dirs
                      for f in _file_names(out / d)]
            if shards and sum(os.path.getsize(p) for p in shards) > 500_000:
                break  # mid-way: records are being written
            time.sleep(0.05)
        assert proc.poll() is None, "the converter finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert _gone(proc.pid), "worker processes of the killed converter are still alive"
    assert tmp_dirs, "no temporary output seen before the kill"

    # What a reader finds: the earlier complete run, byte for byte, and nothing else
    # under a shard's or manifest's name.
    names = _file_names(out)
    assert [n for n in names if not n.startswith(".")] == sorted(before)
    assert {n: (out / n).read_bytes() for n in before} == before
    for pattern in ("train-*", "train*", "*.tfrecord", "*-of-*", "*tfrecord*"):
        matched = [os.path.basename(p) for p in tf.io.gfile.glob(str(out / pattern))]
        assert matched and set(matched) <= set(before), (pattern, matched)
    # A glob of everything also matches the temporary directory, which no reader
    # can open as a shard (TensorFlow's glob matches names starting with a dot).
    for path in tf.io.gfile.glob(str(out / "*")):
        assert os.path.basename(path) in before or tf.io.gfile.isdir(path), path
    ids_read, manifest = _read_ids(out)
    assert ids_read == [e["id"] for e in manifest["examples"]]  # shard order
    assert sorted(ids_read) == sorted(ids[:5])
    assert sorted(streams.read_ids(str(out / "train-*"))) == sorted(ids[:5])

    # The same run again completes, removes the leftovers and writes what a run that
    # was never killed writes.
    assert _cli(*common, f"--split_list={tmp_path / 'all.txt'}").returncode == 0
    clean = tmp_path / "clean"
    convert(pascal_part_dir=str(src), images_dir=str(src), output_dir=str(clean),
            split_list=str(tmp_path / "all.txt"), num_shards=3, progress=False)
    assert _file_names(out) == _file_names(clean)  # no temporary directory left
    for name in _file_names(clean):
        if name.endswith(".tfrecord"):
            assert (out / name).read_bytes() == (clean / name).read_bytes(), name
