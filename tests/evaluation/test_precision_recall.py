"""Improved precision and recall against cases solved by hand."""

import numpy as np
import pytest

from vae_balance.evaluation.precision_recall import manifold_radii, precision_recall

# Real points on a line: two clusters. With k = 2 their radii are
# 0 -> 2 (neighbours 1, 2), 1 -> 1, 2 -> 2, and the same for 10, 11, 12, so
# the real manifold is [-2, 4] u [8, 14].
REAL = np.array([0.0, 1, 2, 10, 11, 12])[:, None]
# Generated: near the first cluster, inside the second one, and far away.
# k = 2 radii: 0.5 -> 1, 1.0 -> 0.5, 1.5 -> 1; 12.5 -> 0.4, 12.7 -> 0.2,
# 12.9 -> 0.4; 30 -> 0.3, 30.1 -> 0.2, 30.3 -> 0.3. The generated manifold
# is [-0.5, 2.5] u [12.1, 13.3] u [29.7, 30.6].
FAKE = np.array([0.5, 1.0, 1.5, 12.5, 12.7, 12.9, 30.0, 30.1, 30.3])[:, None]


def test_radii_are_the_distance_to_the_kth_other_point():
    np.testing.assert_allclose(manifold_radii(REAL, k=2), [2, 1, 2, 2, 1, 2])
    np.testing.assert_allclose(
        manifold_radii(FAKE, k=2, dtype=np.float64),
        [1, 0.5, 1, 0.4, 0.2, 0.4, 0.3, 0.2, 0.3],
        atol=1e-12,
    )
    np.testing.assert_allclose(manifold_radii(REAL, k=1), [1, 1, 1, 1, 1, 1])
    # A duplicate is a neighbour at distance 0; the point itself is not.
    np.testing.assert_allclose(
        manifold_radii(np.array([[0.0], [0.0], [3.0]]), k=1), [0, 0, 3]
    )


@pytest.mark.parametrize("batch_size", [1, 4, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_one_dimensional_case_solved_by_hand(batch_size, dtype):
    # Precision: 0.5, 1, 1.5 and 12.5, 12.7, 12.9 lie in [-2, 4] u [8, 14],
    # the three near 30 do not: 6 / 9. Recall: 0, 1, 2 lie in [-0.5, 2.5],
    # 10, 11 and 12 in no generated ball (12 < 12.1): 3 / 6.
    found = precision_recall(REAL, FAKE, k=2, batch_size=batch_size, dtype=dtype)
    assert found == {"precision": pytest.approx(2 / 3), "recall": 0.5}
    # The roles swap with the sets.
    swapped = precision_recall(FAKE, REAL, k=2, batch_size=batch_size, dtype=dtype)
    assert swapped == {"precision": 0.5, "recall": pytest.approx(2 / 3)}


def test_a_two_dimensional_case_with_the_papers_k_of_3():
    # Real: the 4 corners of the unit square and its centre. With k = 3 each
    # corner's radius is 1 (two adjacent corners at 1, the centre at 0.71),
    # the centre's is 0.71 (all four corners). Generated: 4 points at the
    # corners of a square of side 0.2 around (3, 3) (radius, k = 3: the far
    # corner at 0.28) and one point at (0.5, 1.8).
    real = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]])
    fake = np.array(
        [[3.0, 3.0], [3.2, 3.0], [3.0, 3.2], [3.2, 3.2], [0.5, 1.8]], np.float64
    )
    radii = manifold_radii(real, k=3)
    np.testing.assert_allclose(radii, [1, 1, 1, 1, np.sqrt(0.5)], rtol=1e-6)
    found = precision_recall(real, fake, k=3)
    # (0.5, 1.8) is at sqrt(0.25 + 0.64) = 0.94 < 1 from the corner (0, 1):
    # inside. The four near (3, 3) are 2.8 or more from every real point.
    assert found["precision"] == pytest.approx(1 / 5)
    # (0.5, 1.8)'s radius (k = 3) is its distance to (3.2, 3.0), 2.95: it
    # covers (0, 1) at 0.94, (1, 1) at 0.94, (0.5, 0.5) at 1.3, (0, 0) and
    # (1, 0) at 1.87: all five real points.
    assert found["recall"] == 1.0


def test_identical_sets_give_one_and_far_apart_sets_give_zero():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((200, 64))
    assert precision_recall(features, features) == {"precision": 1.0, "recall": 1.0}
    far = rng.standard_normal((150, 64)) + 100.0
    assert precision_recall(features, far) == {"precision": 0.0, "recall": 0.0}


def test_dropping_a_mode_lowers_recall_not_precision():
    rng = np.random.default_rng(1)
    centres = np.zeros((2, 16))
    centres[1, 0] = 30.0
    real = rng.standard_normal((1000, 16)) + centres[rng.integers(0, 2, 1000)]
    both_modes = rng.standard_normal((500, 16)) + centres[rng.integers(0, 2, 500)]
    one_mode = rng.standard_normal((500, 16))  # the second mode dropped
    full = precision_recall(real, both_modes)
    dropped = precision_recall(real, one_mode)
    # Measured: 0.812 / 0.792 with both modes, 0.806 / 0.385 with one.
    assert dropped["precision"] == pytest.approx(full["precision"], abs=0.03)
    assert dropped["recall"] < 0.55 * full["recall"]
    # No ball of the first mode reaches the second: at most its share.
    assert dropped["recall"] <= np.mean(real[:, 0] < 15)


def test_blocks_agree_with_a_brute_force_computation():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((130, 8))
    fake = 1.3 * rng.standard_normal((170, 8)) + 0.2
    distances = np.linalg.norm(fake[:, None] - real[None], axis=-1)
    real_radii = np.sort(np.linalg.norm(real[:, None] - real[None], axis=-1))[:, 3]
    fake_radii = np.sort(np.linalg.norm(fake[:, None] - fake[None], axis=-1))[:, 3]
    expected = {
        "precision": np.mean(np.any(distances <= real_radii[None], axis=1)),
        "recall": np.mean(np.any(distances <= fake_radii[:, None], axis=0)),
    }
    assert 0.2 < expected["precision"] < 0.95 and 0.2 < expected["recall"] < 1
    for batch_size in (7, 64, 1000):
        found = precision_recall(real, fake, batch_size=batch_size, dtype=np.float64)
        assert found == pytest.approx(expected)
    radii = manifold_radii(real, batch_size=7)
    np.testing.assert_allclose(radii, real_radii, rtol=1e-5)
    # Precomputed real radii give the same answer.
    again = precision_recall(real, fake, real_radii=radii, dtype=np.float64)
    assert again == pytest.approx(expected)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="need more than k=3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="differ in size"):
        precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(np.full((10, 2), np.nan), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="real_radii"):
        precision_recall(np.ones((10, 2)), np.zeros((10, 2)), real_radii=[1.0])
