"""Tests of pipelines/boxes.py: person boxes from COCO instances and detection files."""

import json

import numpy as np
import pytest

from pipelines import boxes


def _instances(tmp_path):
    content = {
        "images": [{"id": 7, "file_name": "sub/img_a.jpg", "height": 40, "width": 60},
                   {"id": 8, "file_name": "img_b.jpg", "height": 40, "width": 60}],
        "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"image_id": 7, "category_id": 1, "bbox": [6, 4, 12, 20], "iscrowd": 0},
            {"image_id": 7, "category_id": 1, "bbox": [30, 0, 30, 40], "iscrowd": 0},
            {"image_id": 7, "category_id": 1, "bbox": [0, 0, 60, 40], "iscrowd": 1},
            {"image_id": 7, "category_id": 3, "bbox": [1, 1, 2, 2], "iscrowd": 0},
        ]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(content))
    return str(path)


def test_coco_instances_two_persons_and_a_crowd(tmp_path):
    coco = boxes.read_coco(_instances(tmp_path))
    assert coco.kind == "instances" and coco.person_category == 1
    assert coco.counts == {"crowd_skipped": 1, "below_min_score": 0, "other_category": 1,
                           "kept": 2}
    assert coco.boxes_of("img_a.jpg") == [[6, 4, 12, 20], [30, 0, 30, 40]]
    assert coco.boxes_of("img_b") == [] and coco.knows("img_b") and not coco.knows("img_c")
    assert coco.sizes[boxes.image_key("img_a")] == (40, 60)
    # [x, y, w, h] pixels -> (y/H, x/W, (y+h)/H, (x+w)/W)
    np.testing.assert_allclose(boxes.coco_boxes(coco.boxes_of("img_a"), 40, 60),
                               [[0.1, 0.1, 0.6, 0.3], [0.0, 0.5, 1.0, 1.0]], rtol=1e-6)


def test_detections_on_both_sides_of_min_score(tmp_path):
    path = tmp_path / "detections.json"
    path.write_text(json.dumps([
        {"image_id": 139, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 139, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.5},
        {"image_id": 139, "category_id": 1, "bbox": [9, 9, 1, 1], "score": 0.49},
        {"image_id": "photo_2", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.2},
        {"image_id": 139, "category_id": 18, "bbox": [0, 0, 5, 5], "score": 0.99},
    ]))
    coco = boxes.read_coco(str(path), min_score=0.5)
    assert coco.kind == "detections" and coco.listed is None
    # A score equal to --min_score passes; id 139 is the file 000000000139.jpg.
    assert coco.boxes_of("000000000139.jpg") == [[0, 0, 10, 10], [5, 5, 10, 10]]
    assert coco.boxes_of("photo_2.png") == [] and coco.knows("photo_2.png")
    assert coco.counts == {"crowd_skipped": 0, "below_min_score": 2, "other_category": 1,
                           "kept": 2}
    assert len(boxes.read_coco(str(path), min_score=0.1).boxes_of("photo_2")) == 1


@pytest.mark.parametrize("content, problem", [
    ({"annotations": [], "images": [], "categories": []}, "one category named 'person'"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}], r"entry\[0\]: 'bbox'"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}], "negative size"),
    ([{"category_id": 1, "bbox": [0, 0, 1, 1]}], "needs 'image_id'"),
    ({"images": []}, "neither a COCO instances file"),
])
def test_bad_coco_files_are_refused_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(boxes.BadInputError, match=problem) as err:
        boxes.read_coco(str(path))
    assert str(path) in str(err.value)
