"""Shared test fixtures: paths to ../shared, and a quiet TensorFlow."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "pascal_part"


@pytest.fixture
def pascal_part_dir():
    """The real Pascal-Part samples of ../shared/fixtures, or a skip saying why."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real Pascal-Part fixtures not found at {FIXTURES} "
                    "(../shared/fixtures/pascal_part beside the checkout)")
    return FIXTURES
