"""Leaderboard table and the BraTS ranking score on a toy example."""

from __future__ import annotations

import pandas as pd
import pytest

from brats.errors import BratsInputError
from brats.leaderboard import leaderboard, rank_scores, to_markdown


def toy(dice: float, hd95: float, cases: tuple[str, ...] = ("c1", "c2")) -> pd.DataFrame:
    return pd.DataFrame([{"case": c, "region": r, "dice": dice, "hd95": hd95}
                         for c in cases for r in ("WT", "TC", "ET")])


def test_ranking_with_min_ties() -> None:
    # Dice: A 0.9 → rank 1; B and C tie at 0.8 → both rank 2 (min).
    # HD95: A and B tie at 2 mm → both rank 1; C 5 mm → rank 3.
    # Mean rank per method over 2 cases × 3 regions × 2 metrics: A 1, B 1.5, C 2.5.
    tables = {"C": toy(0.8, 5.0), "A": toy(0.9, 2.0), "B": toy(0.8, 2.0)}
    assert rank_scores(tables).to_dict() == {"C": 2.5, "A": 1.0, "B": 1.5}
    board = leaderboard(tables)
    assert board.index.tolist() == ["A", "B", "C"]
    assert board.loc["B", "rank_score_normalised"] == pytest.approx(0.5)
    assert board.loc["A", "Dice_WT"] == pytest.approx(0.9)
    assert board.loc["C", "HD95_ET"] == pytest.approx(5.0)
    markdown = to_markdown(board)
    assert markdown.splitlines()[0].startswith("| method | Dice_WT | Dice_TC | Dice_ET | HD95_WT")
    assert "| A | 0.900 |" in markdown


def test_ranks_per_case_not_per_mean() -> None:
    # A wins case c1 by a little, B wins c2 by a lot: means favour B, ranks tie them.
    a = pd.concat([toy(0.90, 3.0, ("c1",)), toy(0.50, 30.0, ("c2",))])
    b = pd.concat([toy(0.89, 3.1, ("c1",)), toy(0.95, 1.0, ("c2",))])
    scores = rank_scores({"A": a, "B": b})
    assert scores["A"] == scores["B"] == 1.5


def test_different_cases_are_an_error() -> None:
    with pytest.raises(BratsInputError, match="different cases"):
        rank_scores({"A": toy(0.9, 2.0), "B": toy(0.9, 2.0, ("c1", "c3"))})
