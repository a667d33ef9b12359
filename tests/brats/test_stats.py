"""Comparison statistics against hand-computed values on small tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brats.errors import BratsInputError
from brats.leaderboard import rank_scores
from brats.stats import (
    bootstrap_ci,
    bootstrap_indices,
    case_ranks,
    holm,
    mean_ci,
    paired_tests,
    rank_stability,
    shared_cases,
)

CASES = [f"c{i}" for i in range(1, 7)]
#: A − B per case: |d| ranks 1..6, only c2 negative → W+ = 19, W− = 2.
DIFFS = [0.0625, -0.125, 0.1875, 0.25, 0.3125, 0.375]


def table(wt: list[float], hd95: list[float] | None = None, cases: list[str] = CASES
          ) -> pd.DataFrame:
    """Long metrics table: WT Dice ``wt`` per case, TC = WT − 0.125, ET = WT − 0.25 (exact in
    binary), HD95 as given (default 5 mm everywhere) on every region."""
    hd95 = hd95 or [5.0] * len(cases)
    return pd.DataFrame([{"case": c, "region": r, "dice": w - s, "hd95": h}
                         for c, w, h in zip(cases, wt, hd95)
                         for r, s in (("WT", 0.0), ("TC", 0.125), ("ET", 0.25))])


@pytest.fixture()
def tables() -> dict[str, pd.DataFrame]:
    a = [0.5] * 6
    return {"A": table(a), "B": table([x - d for x, d in zip(a, DIFFS)]), "C": table(a)}


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.2 → ×4, ×3, ×2, ×1 = 0.04, 0.09, 0.08, 0.2 → running max.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2])
    out = holm([np.nan, 0.5, 0.02])  # m = 2: 0.02 × 2, 0.5 × 1
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [0.5, 0.04])
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])


def test_paired_wilcoxon_exact_by_hand(tables: dict[str, pd.DataFrame]) -> None:
    tests = paired_tests(tables, metrics=("dice",))
    assert len(tests) == 3 * 3  # three regions × three pairs
    wt = tests[tests["region"] == "WT"].set_index(["method_a", "method_b"])
    # Exact null of W on n = 6: P(W ≤ 2) = #{∅, {1}, {2}} / 2⁶ = 3/64; two-sided p = 6/64.
    assert wt.loc[("A", "B"), "statistic"] == 2.0
    assert wt.loc[("A", "B"), "p_value"] == pytest.approx(6 / 64)
    assert wt.loc[("B", "C"), "p_value"] == pytest.approx(6 / 64)
    assert wt.loc[("A", "C"), "p_value"] == 1.0  # identical scores
    # Holm over the family {6/64, 1, 6/64}: 3 × 6/64, then max(2 × 6/64, 18/64), then 1.
    assert wt["p_holm"].tolist() == pytest.approx([18 / 64, 1.0, 18 / 64])
    assert wt.loc[("A", "B"), "mean_diff"] == pytest.approx(np.mean(DIFFS))
    assert wt.loc[("A", "B"), "better"] == "A" and wt.loc[("A", "C"), "better"] == "="
    assert wt.loc[("A", "B"), "n"] == 6
    et = tests[tests["region"] == "ET"]
    assert et["p_value"].tolist() == pytest.approx(wt["p_value"].tolist())


def test_paired_tests_hd95_lower_is_better_and_shared_cases() -> None:
    tables = {"A": table([0.9] * 6, hd95=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
              "B": table([0.9] * 7, hd95=[9.0] * 7, cases=[*CASES, "extra"])}
    tests = paired_tests(tables, metrics=("hd95",))
    assert (tests["better"] == "A").all() and (tests["n"] == 6).all()
    # All six differences negative: W = 0, exact two-sided p = 2 / 64.
    assert tests["p_value"].tolist() == pytest.approx([2 / 64] * 3)
    with pytest.raises(BratsInputError, match="two methods"):
        paired_tests({"A": tables["A"]})
    with pytest.raises(BratsInputError, match="share no scored case"):
        shared_cases({"A": table([0.5]), "B": table([0.5], cases=["z"])})


def test_bootstrap_ci_matches_numpy() -> None:
    values = np.array([0.2, 0.9, 0.4, 0.7, 0.55, 0.1, 0.8])
    low, high = bootstrap_ci(values, n_boot=500, seed=7)
    idx = np.random.default_rng(7).integers(0, values.size, size=(500, values.size))
    means = values[idx].mean(axis=1)
    assert (low, high) == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)))
    assert low < values.mean() < high
    assert bootstrap_ci(np.full(5, 0.3), n_boot=50) == pytest.approx((0.3, 0.3))
    with pytest.raises(BratsInputError, match="level"):
        bootstrap_ci(values, level=95)


def test_mean_ci(tables: dict[str, pd.DataFrame]) -> None:
    means = mean_ci(tables, n_boot=300, seed=1).set_index(["method", "metric", "region"])
    b = np.array([0.5 - d for d in DIFFS]) - 0.125
    row = means.loc[("B", "dice", "TC")]
    assert row["n"] == 6 and row["mean"] == pytest.approx(b.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_ci(b, 300, 1))
    assert means.loc[("A", "hd95", "ET"), ["mean", "ci_low", "ci_high"]].tolist() == \
        pytest.approx([5.0, 5.0, 5.0])


def test_rank_stability_one_method_always_wins() -> None:
    tables = {"best": table([0.9] * 6, hd95=[1.0] * 6), "worst": table([0.5] * 6, hd95=[8.0] * 6),
              "mid": table([0.7] * 6, hd95=[4.0] * 6)}
    ranking = rank_stability(tables, n_boot=200, seed=3)
    assert ranking.index.tolist() == ["best", "mid", "worst"]
    assert ranking["place"].tolist() == [1, 2, 3]
    assert ranking["rank_score"].tolist() == [1.0, 2.0, 3.0]
    assert ranking["stability"].tolist() == [1.0, 1.0, 1.0]
    assert ranking["p_first"].tolist() == [1.0, 0.0, 0.0]


def test_rank_stability_by_hand_on_two_cases() -> None:
    # A wins every region and metric of c1, B every one of c2: scores tie at 1.5 (both first).
    tables = {"A": table([0.9, 0.5], [1.0, 9.0], ["c1", "c2"]),
              "B": table([0.5, 0.9], [9.0, 1.0], ["c1", "c2"])}
    assert case_ranks(tables).to_numpy().tolist() == [[1.0, 2.0], [2.0, 1.0]]
    ranking = rank_stability(tables, n_boot=400, seed=5)
    assert ranking["place"].tolist() == [1, 1]
    # A keeps first place unless both draws are c2 (index 1); B unless both are c1.
    idx = bootstrap_indices(2, 400, 5)
    assert ranking.loc["A", "stability"] == pytest.approx(np.mean(~(idx == 1).all(axis=1)))
    assert ranking.loc["B", "stability"] == pytest.approx(np.mean(~(idx == 0).all(axis=1)))
    assert 0.6 < ranking.loc["A", "stability"] < 0.9
    assert ranking["rank_score"].tolist() == pytest.approx(rank_scores(tables).tolist())
