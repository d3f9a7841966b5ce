"""The one GT writer: validates before writing; errors name the file and what is wrong."""
from __future__ import annotations

import numpy as np
import pytest

from pointformer.evaluation import read_gt_ids
from pointformer.io.gt import write_gt_file


def test_round_trip_through_the_evaluation_reader(tmp_path):
    ids = np.array([0, 3001, 3001, 5002, 0], dtype=np.int32)
    path = write_gt_file(tmp_path / "gt" / "scene0000_00.txt", ids)
    assert path.read_text() == "0\n3001\n3001\n5002\n0\n"
    np.testing.assert_array_equal(read_gt_ids(path), ids)


@pytest.mark.parametrize("bad, message", [
    (np.array([[1, 2]]), "1-D array"),
    (np.array([1.5, 2.0]), "must be integers"),
    (np.array([3001, -1]), "vertex 1 has -1"),
])
def test_bad_ids_raise_naming_the_file_and_write_nothing(tmp_path, bad, message):
    path = tmp_path / "scene0001_00.txt"
    with pytest.raises(ValueError, match=message) as caught:
        write_gt_file(path, bad)
    assert str(path) in str(caught.value)
    assert not path.exists()
