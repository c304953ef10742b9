"""The rows a detector can score: finite everywhere, the others NaN and never passed to the decision."""

from __future__ import annotations

import numpy as np

from detbench.probabilities import finite_rows, score_finite_rows


def test_a_row_with_any_nan_or_inf_is_not_finite_whatever_its_shape() -> None:
    values = np.zeros((4, 2, 3))
    values[1, 1, 2] = np.nan
    values[3, 0, 0] = np.inf
    assert finite_rows(values).tolist() == [True, False, True, False]


def test_only_finite_rows_reach_the_decision_and_the_rest_score_nan() -> None:
    values = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, -1.0]])
    seen: list[np.ndarray] = []

    def decide(rows: np.ndarray) -> np.ndarray:
        seen.append(rows)
        return rows.sum(axis=1)

    scores = score_finite_rows(values, decide)
    np.testing.assert_array_equal(seen[0], values[[0, 2]])
    assert scores[0] == 3.0 and np.isnan(scores[1]) and scores[2] == 2.0


def test_no_finite_row_never_calls_the_decision() -> None:
    def decide(rows: np.ndarray) -> np.ndarray:
        raise AssertionError("called on no rows")

    assert np.isnan(score_finite_rows(np.full((2, 3), np.nan), decide)).all()
