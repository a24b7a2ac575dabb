"""Tests of tools/make_synthetic.py: the synthetic dataset in the real source formats."""

import glob
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pipelines import schema
from tools import make_synthetic as ms

NUM, SIZE = 8, 96


def _generate(path, **overrides):
    kwargs = dict(output_dir=str(path), num_images=NUM, image_size=SIZE, seed=0,
                  difficulty=ms.DEFAULT_DIFFICULTY, val_fraction=0.3)
    kwargs.update(overrides)
    return ms.generate(**kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = _generate(out)
    return out, summary


def _ids(out):
    return sorted(os.path.basename(p)[:-4] for p in glob.glob(f"{out}/JPEGImages/*.jpg"))


def _anno(path):
    return scipy.io.loadmat(str(path))["anno"][0, 0]


def _objects(out, image_id):
    """[(class, class_ind, bool mask, [(part name, bool mask)])] of a .mat file."""
    result = []
    for obj in _anno(f"{out}/Annotations_Part/{image_id}.mat")["objects"][0]:
        parts = []
        if obj["parts"].size:
            parts = [(str(p["part_name"][0]), p["mask"].astype(bool)) for p in obj["parts"][0]]
        result.append((str(obj["class"][0]), int(obj["class_ind"][0, 0]),
                       obj["mask"].astype(bool), parts))
    return result


def _xml_objects(out, image_id):
    root = ET.parse(f"{out}/Annotations/{image_id}.xml").getroot()
    size = root.find("size")
    hw = int(size.findtext("height")), int(size.findtext("width"))
    objs = []
    for o in root.findall("object"):
        b = o.find("bndbox")
        objs.append((o.findtext("name"),
                     tuple(int(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return hw, objs


def _painted(parts, shape):
    """Fine part map of one person: its parts painted in file order (0 = none)."""
    out = np.zeros(shape, np.uint8)
    for name, mask in parts:
        out[mask] = schema.PART_ID[name]
    return out


def _read_all(out):
    return {os.path.relpath(p, out): open(p, "rb").read()
            for p in glob.glob(f"{out}/**/*", recursive=True) if os.path.isfile(p)}


# === Layout ===

def test_layout_and_summary(dataset):
    out, summary = dataset
    ids = _ids(out)
    assert ids == [f"syn_{i:06d}" for i in range(NUM)]
    for i in ids:
        assert os.path.isfile(f"{out}/Annotations_Part/{i}.mat")
        assert os.path.isfile(f"{out}/Annotations/{i}.xml")
        with Image.open(f"{out}/JPEGImages/{i}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (SIZE, SIZE)
    assert os.path.isfile(f"{out}/{ms.MANIFEST_NAME}") and os.path.isfile(f"{out}/README.txt")
    persons = sum(c == "person" for i in ids for c, *_ in _objects(out, i))
    assert summary["images"] == NUM and summary["persons"] == persons
    assert summary["train"] + summary["val"] == NUM


def test_split_lists_partition_the_ids(dataset):
    out, _ = dataset
    train = open(f"{out}/ImageSets/train.txt").read().split()
    val = open(f"{out}/ImageSets/val.txt").read().split()
    assert not set(train) & set(val)
    assert sorted(train + val) == _ids(out)
    assert len(val) == int(NUM * 0.3)
    # A prefix keeps its split: the split of the first k ids does not depend on N.
    tr5, va5 = ms.split_ids(5, 0.3)
    assert set(tr5) <= set(train) and set(va5) <= set(val)
    assert ms.split_ids(4, 0.0) == ([f"syn_{i:06d}" for i in range(4)], [])


# === The .mat files ===

def _signature(obj):
    """The structure of one object of a loaded .mat: dtypes, shape patterns, fields."""
    parts = obj["parts"]
    if parts.size:
        assert parts.shape[0] == 1 and parts.ndim == 2
        p0 = parts[0, 0]
        part_sig = ("1xK", parts.dtype.names, p0["part_name"].dtype.kind,
                    p0["part_name"].shape, p0["mask"].dtype.str, p0["mask"].ndim)
    else:
        part_sig = (parts.shape, parts.dtype.names)
    return (obj["class"].dtype.kind, obj["class"].shape, obj["class_ind"].dtype.str,
            obj["class_ind"].shape, obj["mask"].dtype.str, obj["mask"].ndim, part_sig)


def _file_signature(path):
    mat = scipy.io.loadmat(str(path))
    anno = mat["anno"]
    a = anno[0, 0]
    return ((tuple(sorted(k for k in mat if not k.startswith("__"))), anno.shape, a.dtype.names,
             a["imname"].dtype.kind, a["imname"].shape, a["objects"].ndim,
             a["objects"].shape[0], a["objects"].dtype.names),
            {_signature(o) for o in a["objects"][0]})


def test_mat_structure_matches_real_pascal_part(dataset, pascal_part_dir, tmp_path):
    out, _ = dataset
    real_top, real_objects = set(), set()
    for path in sorted(pascal_part_dir.glob("*.mat")):
        top, objs = _file_signature(path)
        real_top.add(top)
        real_objects |= objs
    assert len(real_top) == 1  # every real file has the same top-level structure
    # Both kinds of object exist in the fixtures: with parts (1, K) and without (0, 0).
    assert {sig[-1][0] for sig in real_objects} == {"1xK", (0, 0)}
    # A file with a partless object, written by the same writer as the generator.
    image, objects, _ = ms.render_image(0, 0, SIZE, SIZE, 0.5)
    chair = ms.Annotated("chair", np.zeros((SIZE, SIZE), bool), [], "Unspecified",
                         False, False)
    chair.mask[0, 0] = True
    (tmp_path / "x.mat").write_bytes(ms.encode_mat("x", list(objects) + [chair]))
    paths = sorted(glob.glob(f"{out}/Annotations_Part/*.mat")) + [tmp_path / "x.mat"]
    seen = set()
    for path in paths:
        top, objs = _file_signature(path)
        assert top in real_top, path
        assert objs <= real_objects, (path, objs - real_objects)
        seen |= {sig[-1][0] for sig in objs}
    assert seen == {"1xK", (0, 0)}


def test_mat_round_trip(dataset):
    out, _ = dataset
    image, objects, _ = ms.render_image(0, 3, SIZE, SIZE, ms.DEFAULT_DIFFICULTY)
    anno = _anno(f"{out}/Annotations_Part/syn_000003.mat")
    assert str(anno["imname"][0]) == "syn_000003"
    loaded = _objects(out, "syn_000003")
    assert len(loaded) == len(objects)
    for (cls, ind, mask, parts), obj in zip(loaded, objects):
        assert cls == obj.cls and ind == ms.VOC_CLASS_IND[cls]
        assert mask.shape == (SIZE, SIZE) and np.array_equal(mask, obj.mask)
        assert [n for n, _ in parts] == [n for n, _ in obj.parts]
        for (_, m), (_, m0) in zip(parts, obj.parts):
            assert np.array_equal(m, m0)
    raw = scipy.io.loadmat(f"{out}/Annotations_Part/syn_000003.mat")
    assert raw["__header__"].startswith(b"MATLAB 5.0 MAT-file")
    for obj in anno["objects"][0]:
        assert obj["class_ind"].dtype == np.uint8
        assert set(np.unique(obj["mask"])) <= {0, 1}


# === Masks, parts and boxes ===

def test_masks_parts_and_boxes_are_consistent(dataset):
    out, _ = dataset
    names_seen, overlaps, uncovered, total = set(), 0, 0, 0
    for image_id in _ids(out):
        objects = _objects(out, image_id)
        persons = [o for o in objects if o[0] == "person"]
        assert 1 <= len(persons) <= 3, image_id
        # Every pixel belongs to at most one object (the front-most one).
        stack = np.stack([m for _, _, m, _ in objects]).astype(int)
        assert stack.sum(axis=0).max() == 1, image_id
        for cls, ind, mask, parts in objects:
            assert mask.any() and ind == ms.VOC_CLASS_IND[cls]
            for name, pmask in parts:
                assert not (pmask & ~mask).any(), (image_id, name)
        for _, _, mask, parts in persons:
            assert parts, image_id
            names = [n for n, _ in parts]
            assert len(names) == len(set(names)) and set(names) <= set(schema.PART_NAMES)
            names_seen |= set(names)
            painted = _painted(parts, mask.shape)
            # Every listed part shows in the painted map; parts overlap (a later part
            # covers an earlier one, as in the real files); some person pixels are no part.
            for name, _ in parts:
                assert (painted == schema.PART_ID[name]).any(), (image_id, name)
            cover = sum(m.astype(int) for _, m in parts)
            overlaps += int((cover > 1).sum())
            uncovered += int((mask & (painted == 0)).sum())
            total += int(mask.sum())
        # The XML lists every object in .mat order with the tight 1-based box.
        (h, w), xml_objs = _xml_objects(out, image_id)
        assert (h, w) == (SIZE, SIZE)
        assert [n for n, _ in xml_objs] == [c for c, *_ in objects]
        for (_, box), (_, _, mask, _) in zip(xml_objs, objects):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert box == (cols[0] + 1, rows[0] + 1, cols[-1] + 1, rows[-1] + 1), image_id
    core = {"head", "hair", "torso", "neck", "luarm", "llarm", "ruarm", "rlarm",
            "luleg", "llleg", "ruleg", "rlleg"}
    assert core <= names_seen, core - names_seen
    assert overlaps > 0
    assert 0 < uncovered < 0.1 * total


def test_left_and_right_follow_the_view(dataset):
    """'l' parts are the person's own left: image right in a frontal view."""
    out, _ = dataset
    votes = []
    for image_id in _ids(out):
        objects = _objects(out, image_id)
        root = ET.parse(f"{out}/Annotations/{image_id}.xml").getroot()
        poses = [o.findtext("pose") for o in root.findall("object")]
        for (cls, _, _, parts), pose in zip(objects, poses):
            p = dict(parts)
            if cls != "person" or pose not in ("Frontal", "Rear"):
                continue
            if "luleg" in p and "ruleg" in p:
                dx = np.nonzero(p["luleg"])[1].mean() - np.nonzero(p["ruleg"])[1].mean()
                votes.append((dx > 0) == (pose == "Frontal"))
    assert len(votes) >= 3 and np.mean(votes) >= 0.8, votes


def test_non_square_images(tmp_path):
    s = ms.generate(output_dir=str(tmp_path), num_images=2, image_size="64,112", seed=3,
                    difficulty=0.5, val_fraction=0.5)
    assert s["image_size"] == [64, 112]
    for image_id in ("syn_000000", "syn_000001"):
        with Image.open(tmp_path / "JPEGImages" / f"{image_id}.jpg") as im:
            assert im.size == (112, 64)
        for _, _, mask, parts in _objects(tmp_path, image_id):
            assert mask.shape == (64, 112)
            assert all(m.shape == (64, 112) for _, m in parts)
        assert _xml_objects(tmp_path, image_id)[0] == (64, 112)


# === Appearance ===

def test_appearance_varies_across_figures(dataset):
    """The visible torso's mean colour differs a lot between figures and images."""
    out, _ = dataset
    means = []
    for image_id in _ids(out):
        image = np.asarray(Image.open(f"{out}/JPEGImages/{image_id}.jpg"), np.float64)
        for cls, _, mask, parts in _objects(out, image_id):
            if cls != "person":
                continue
            painted = _painted(parts, mask.shape)
            torso = painted == schema.PART_ID["torso"]
            if torso.sum() >= 20:
                means.append(image[torso].mean(axis=0))
    means = np.array(means)
    assert len(means) >= 5
    spread = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert means.std(axis=0).mean() > 20, means
    assert spread.max() > 100, spread.max()


def test_difficulty_extremes_run(tmp_path):
    for d in (0.0, 1.0):
        s = ms.generate(output_dir=str(tmp_path / str(d)), num_images=2, image_size=64,
                        seed=1, difficulty=d, val_fraction=0.0)
        assert s["images"] == 2 and s["persons"] >= 2 and s["val"] == 0


# === Determinism ===

def test_same_seed_same_bytes_other_seed_other_bytes(dataset, tmp_path):
    out, _ = dataset
    first = _read_all(out)
    _generate(tmp_path / "again")
    assert _read_all(tmp_path / "again") == first
    # The first images do not depend on --num_images.
    _generate(tmp_path / "prefix", num_images=3)
    prefix = _read_all(tmp_path / "prefix")
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations_Part", "mat"), ("Annotations", "xml")):
        for i in range(3):
            key = f"{sub}/syn_{i:06d}.{ext}"
            assert prefix[key] == first[key], key
    _generate(tmp_path / "other", seed=1)
    other = _read_all(tmp_path / "other")
    for i in range(NUM):
        for sub, ext in (("JPEGImages", "jpg"), ("Annotations_Part", "mat")):
            key = f"{sub}/syn_{i:06d}.{ext}"
            assert other[key] != first[key], key


def test_workers_do_not_change_the_output(tmp_path):
    kwargs = dict(num_images=4, image_size=64, seed=5, difficulty=0.5, val_fraction=0.25)
    ms.generate(output_dir=str(tmp_path / "one"), num_workers=1, **kwargs)
    ms.generate(output_dir=str(tmp_path / "two"), num_workers=2, **kwargs)
    assert _read_all(tmp_path / "one") == _read_all(tmp_path / "two")


# === Bad arguments and the output directory ===

@pytest.mark.parametrize("overrides, words", [
    (dict(num_images=0), "num_images"),
    (dict(num_images=-3), "num_images"),
    (dict(num_images=2.5), "num_images"),
    (dict(difficulty=-0.1), "difficulty"),
    (dict(difficulty=1.5), "difficulty"),
    (dict(difficulty="hard"), "difficulty"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(val_fraction=-0.2), "val_fraction"),
    (dict(image_size=0), "image_size"),
    (dict(image_size=16), "image_size"),
    (dict(image_size="abc"), "image_size"),
    (dict(image_size="64,64,64"), "image_size"),
    (dict(seed=-1), "seed"),
    (dict(num_workers=0), "num_workers"),
    (dict(output_dir=""), "output_dir"),
])
def test_bad_arguments_raise_clear_errors(tmp_path, overrides, words):
    kwargs = dict(output_dir=str(tmp_path / "out"), num_images=1, image_size=64)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=words):
        ms.generate(**kwargs)
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_refuses_foreign_content_and_overwrites_its_own_output(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        ms.generate(output_dir=str(foreign), num_images=1, image_size=64)
    assert (foreign / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        ms.generate(output_dir=str(a_file), num_images=1, image_size=64)
    own = tmp_path / "own"
    ms.generate(output_dir=str(own), num_images=3, image_size=64)
    ms.generate(output_dir=str(own), num_images=1, image_size=64)
    assert _ids(own) == ["syn_000000"]  # stale images of the earlier run are gone
    assert len(glob.glob(f"{own}/Annotations_Part/*.mat")) == 1
    assert open(own / "ImageSets" / "train.txt").read().split() == ["syn_000000"]


def test_command_line(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    bad = subprocess.run([sys.executable, "-m", "tools.make_synthetic",
                          f"--output_dir={tmp_path / 'bad'}", "--num_images=0"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "num_images" in bad.stderr
    good = subprocess.run([sys.executable, "-m", "tools.make_synthetic",
                           f"--output_dir={tmp_path / 'good'}", "--num_images=2",
                           "--image_size=48,64", "--seed=2"],
                          capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stderr
    assert "wrote 2 images" in good.stderr
    assert _ids(tmp_path / "good") == ["syn_000000", "syn_000001"]


# === The converter reads it ===

def test_make_tfrecords_converts_the_synthetic_data(dataset, tmp_path):
    import tensorflow as tf

    from pipelines import records
    from tools import make_tfrecords

    out, _ = dataset
    manifest = make_tfrecords.convert(
        pascal_part_dir=str(out / "Annotations_Part"), images_dir=str(out / "JPEGImages"),
        voc_annotations_dir=str(out / "Annotations"),
        split_list=str(out / "ImageSets" / "train.txt"), output_dir=str(tmp_path),
        split_name="train", num_shards=1, num_workers=1, on_error="fail", progress=False)
    train = open(out / "ImageSets" / "train.txt").read().split()
    assert manifest["counts"]["written"] == len(train)
    assert manifest["counts"]["skipped"] == 0
    path = tmp_path / make_tfrecords.shard_name("train", 0, 1)
    seen = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        ex = records.parse_example(raw)
        seen.append(ex["id"])
        objects = _objects(out, ex["id"])
        persons = [o for o in objects if o[0] == "person"]
        assert ex["height"] == SIZE and ex["width"] == SIZE
        assert ex["jpeg"] == open(out / "JPEGImages" / f"{ex['id']}.jpg", "rb").read()
        assert len(ex["boxes"]) == len(persons)
        for k, (_, _, mask, parts) in enumerate(persons, start=1):
            assert np.array_equal(ex["person_mask"] == k, mask)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            tight = [rows[0] / SIZE, cols[0] / SIZE, (rows[-1] + 1) / SIZE,
                     (cols[-1] + 1) / SIZE]
            np.testing.assert_allclose(ex["boxes"][k - 1], tight, atol=1e-6)
        fine = ex["parts_fine"]
        assert not ((fine > 0) & (ex["person_mask"] == 0)).any()
        expected = np.zeros_like(fine)
        for _, _, _, parts in persons:
            painted = _painted(parts, fine.shape)
            expected = np.where(painted > 0, painted, expected)
        assert np.array_equal(fine, expected)
    assert sorted(seen) == sorted(train)


# === Person statistics: the figures stay like real persons ===
def test_person_record_by_hand():
    mask = np.zeros((10, 20), bool)
    mask[2:6, 3:11] = True       # box 4 rows x 8 columns = 32 pixels
    mask[2:4, 3:7] = False       # 8 of them not the person: fill 24 / 32
    rec = ms.person_record(mask, ["head", "hair", "torso", "rfoot"])
    assert rec["fill"] == pytest.approx(24 / 32)
    assert rec["box_size"] == pytest.approx(np.sqrt(32))
    assert rec["groups"] == ["body", "head", "leg"]
    stats = ms.person_statistics([rec, dict(rec, groups=["body", "hand", "head", "leg"])])
    assert stats["persons"] == 2 and stats["all_four_parts"] == 0.5
    assert stats["share_with"]["hand"] == 0.5 and stats["share_with"]["head"] == 1.0
    assert stats["mean_box_cells"] == pytest.approx(np.sqrt(32) / 8)
    assert "2 persons: mask fills 75.0% of its box" in ms.format_person_statistics(stats)


def test_generated_persons_are_like_real_ones(tmp_path):
    """Over 60 images the masks fill 45-65% of their boxes (real Pascal-Part persons:
    ~55%) and most figures show all four part groups; the manifest records it."""
    summary = _generate(tmp_path, num_images=60, image_size=160)
    stats = summary["person_statistics"]
    assert stats["persons"] >= 60
    assert 0.45 <= stats["mean_fill"] <= 0.65, stats
    assert stats["all_four_parts"] >= 0.75, stats
    manifest = json.load(open(tmp_path / ms.MANIFEST_NAME))
    assert manifest["person_statistics"] == stats


def test_real_fixture_persons_by_the_same_statistic(pascal_part_dir):
    from tools import pascal_part

    records = [ms.person_record(o.mask, [name for name, _ in o.parts])
               for path in sorted(glob.glob(f"{pascal_part_dir}/*.mat"))
               for o in pascal_part.read_objects(path) if o.is_person and o.mask.any()]
    stats = ms.person_statistics(records)
    # The reference the synthetic figures are held to (tools/make_synthetic.py).
    assert 0.50 <= stats["mean_fill"] <= 0.60, stats
