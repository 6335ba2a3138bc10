"""The small helpers under every index file: atomic writes (atomic.py) and reading vector columns (vector_columns.py)."""

import json

import numpy as np
import pytest

from retrieval.atomic import write_atomic, write_json_atomic
from retrieval.vector_columns import column_vectors, row_vectors, vector_dim


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"figure": 1})

    def dies_halfway(temporary):
        temporary.write_text('{"figure": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, dies_halfway)
    assert json.loads(path.read_text()) == {"figure": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_numpy_writes_under_the_temporary_name_it_is_given(tmp_path):
    """np.save appends .npy to a name without it: the temporary keeps the suffix, so the rename finds the file."""
    write_atomic(tmp_path / "map.npy", lambda temporary: np.save(temporary, np.eye(2, dtype=np.float32)))
    assert [p.name for p in tmp_path.iterdir()] == ["map.npy"]
    assert np.array_equal(np.load(tmp_path / "map.npy"), np.eye(2))


@pytest.mark.parametrize("fixed", [True, False])
def test_vectors_read_from_the_arrow_column_are_the_rows_asked(fixed):
    import datasets

    matrix = np.arange(18, dtype=np.float32).reshape(6, 3)
    feature = datasets.Sequence(datasets.Value("float32"), length=3 if fixed else -1)
    dataset = datasets.Dataset.from_dict({"vec": matrix.tolist()}, features=datasets.Features({"vec": feature}))
    assert np.array_equal(column_vectors(dataset, "vec"), matrix)
    assert np.array_equal(row_vectors(dataset, "vec", [4, 0, 4]), matrix[[4, 0, 4]])
    assert np.array_equal(row_vectors(dataset.select([5, 3, 1]), "vec", [0, 2]), matrix[[5, 1]])
    assert np.array_equal(row_vectors(dataset.select(range(2, 6)), "vec", [0]), matrix[[2]])
    assert vector_dim(dataset, "vec") == 3


def test_vectors_are_read_from_the_chunk_each_row_lies_in():
    """A built index's column lies in many Arrow chunks (28 for 2,426 rows): each row is read from its own."""
    import datasets

    matrix = np.arange(30, dtype=np.float32).reshape(10, 3)
    parts = [datasets.Dataset.from_dict({"vec": matrix[a:b].tolist()}) for a, b in ((0, 4), (4, 5), (5, 10))]
    dataset = datasets.concatenate_datasets(parts)
    assert dataset.data.column("vec").num_chunks == 3
    assert np.array_equal(row_vectors(dataset, "vec", [9, 4, 0, 5, 3]), matrix[[9, 4, 0, 5, 3]])
    assert row_vectors(dataset, "vec", []).shape == (0, 3)
    with pytest.raises(IndexError):
        row_vectors(dataset, "vec", [10])
