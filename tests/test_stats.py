"""The statistics reports rest on: exact sign-test values (one- and two-sided, ties dropped),
Holm's correction on known tables, and the record naming which test it holds."""

from __future__ import annotations

import pytest

from ann_langgraph.stats import holm, paired_sign_test, sign_test_p


def _diffs(wins: int, losses: int, ties: int = 0) -> list[float]:
    return [1.0] * wins + [-1.0] * losses + [0.0] * ties


@pytest.mark.parametrize(
    ("wins", "losses", "one_sided", "two_sided"),
    [
        (4, 0, 1 / 16, 2 / 16),
        (7, 3, 176 / 1024, 352 / 1024),
        (3, 7, 968 / 1024, 352 / 1024),  # the two-sided p is symmetric, the one-sided is not
        (5, 5, 638 / 1024, 1.0),  # capped at 1
        (0, 0, 1.0, 1.0),
        (11, 3, 470 / 16384, 940 / 16384),
    ],
)
def test_exact_sign_test_values(wins, losses, one_sided, two_sided):
    diffs = _diffs(wins, losses)
    assert sign_test_p(diffs, alternative="greater") == pytest.approx(one_sided, abs=1e-15)
    assert sign_test_p(diffs, alternative="two-sided") == pytest.approx(two_sided, abs=1e-15)
    assert sign_test_p(diffs) == sign_test_p(diffs, alternative="two-sided")  # the default


def test_ties_are_dropped():
    assert sign_test_p(_diffs(7, 3, ties=30), alternative="greater") == pytest.approx(176 / 1024)
    assert sign_test_p(_diffs(7, 3, ties=30)) == pytest.approx(352 / 1024)
    # fractional differences count by sign only
    assert sign_test_p([0.5, 0.25, 0.5, 0.1], alternative="greater") == pytest.approx(1 / 16)


def test_unknown_alternative_is_refused():
    with pytest.raises(ValueError, match="alternative"):
        sign_test_p([1.0], alternative="less")  # type: ignore[arg-type]


def test_paired_sign_test_names_its_test():
    out = paired_sign_test(_diffs(2, 1, ties=3))
    assert out == {
        "wins": 2,
        "losses": 1,
        "ties": 3,
        "p_value": 1.0,
        "test": "exact sign test",
        "alternative": "two-sided",
    }
    assert paired_sign_test(_diffs(4, 0), alternative="greater")["p_value"] == 1 / 16


@pytest.mark.parametrize(
    ("raw", "adjusted"),
    [
        # sorted 0.01, 0.02, 0.03, 0.04 -> 4*0.01, 3*0.02, 2*0.03, 1*0.04, each at least the last
        ([0.01, 0.04, 0.03, 0.02], [0.04, 0.06, 0.06, 0.06]),
        # monotone: a later (larger) raw p never gets a smaller adjusted p; capped at 1
        ([0.5, 0.01, 0.3], [0.6, 0.03, 0.6]),
        ([0.9, 0.8], [1.0, 1.0]),
        ([0.03], [0.03]),
        ([], []),
    ],
)
def test_holm_on_known_tables(raw, adjusted):
    assert holm(raw) == pytest.approx(adjusted)
