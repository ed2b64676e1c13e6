"""SparseLabels: rows, subsets and per-class counts equal those of the dense table it stands for."""
import numpy as np
import pytest

from ppq2l.data.label_store import SparseLabels, SparseLabelsBuilder, label_counts


def random_tables(seed=0, rows=60, classes=9):
    rng = np.random.default_rng(seed)
    dense = rng.choice([1, 0, -1], size=(rows, classes), p=[0.2, 0.3, 0.5]).astype(np.int8)
    builder = SparseLabelsBuilder(classes)
    for row in dense:
        default = int(rng.choice([0, -1, 1]))
        builder.add(default, {index: int(value) for index, value in enumerate(row)})
    return dense, builder.build()


@pytest.mark.parametrize("seed", range(4))
def test_rows_subsets_and_counts_match_the_dense_table(seed):
    dense, sparse = random_tables(seed)
    assert sparse.shape == dense.shape and len(sparse) == len(dense)
    assert np.array_equal(np.asarray(sparse), dense)
    assert all(np.array_equal(sparse[i], dense[i]) and sparse[i].dtype == np.int8 for i in range(len(dense)))
    keep = np.random.default_rng(seed).random(len(dense)) < 0.5
    assert np.array_equal(np.asarray(sparse[keep]), dense[keep])
    assert np.array_equal(np.asarray(sparse[np.array([5, 2, 2])]), dense[[5, 2, 2]])
    for got, expected in zip(label_counts(sparse), label_counts(dense)):
        assert np.array_equal(got, expected)
    counts = label_counts(dense)
    assert np.array_equal(counts.unknown, (dense == -1).sum(axis=0))
    assert np.array_equal(counts.positives_per_sample, (dense == 1).sum(axis=1))


def test_explicit_entries_equal_to_the_default_are_not_stored():
    builder = SparseLabelsBuilder(4)
    builder.add(-1, {0: 1, 1: -1, 2: 0})
    table = builder.build()
    assert table.indices.tolist() == [0, 2] and table[0].tolist() == [1, -1, 0, -1]
    with pytest.raises(ValueError, match="indptr"):
        SparseLabels(4, np.zeros(2), np.array([0, 1]), np.array([0]), np.array([1]))
