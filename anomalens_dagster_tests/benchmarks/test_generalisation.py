"""The generalisation table's arithmetic: episodes caught at 20 % of their rows, row recall, normal rows flagged."""

from __future__ import annotations

import pandas as pd
import pytest

from anomalens_dagster.constants import DETECTOR_ENSEMBLE, ENTITY_ACTIVITY, ENTITY_ORDER
from benchmarks.generalisation import GeneralisationTable


def scores(rows: list[tuple[str, int, str, bool, bool]]) -> pd.DataFrame:
    """(entity type, id, origin, ensemble flag, zscore flag) -> scored rows, one per detector."""
    return pd.DataFrame(
        [
            (entity, entity_id, origin, detector, flag)
            for entity, entity_id, origin, ensemble, zscore in rows
            for detector, flag in ((DETECTOR_ENSEMBLE, ensemble), ("zscore", zscore))
        ],
        columns=["entity_type", "entity_id", "origin", "detector", "is_anomaly"],
    )


def test_an_episode_counts_as_caught_once_a_fifth_of_its_rows_are_flagged():
    truth = pd.DataFrame(
        [(ENTITY_ACTIVITY, n, "slow_scraping", "slow_scraping:1") for n in range(1, 11)]  # 2 of 10 flagged
        + [(ENTITY_ACTIVITY, n, "slow_scraping", "slow_scraping:2") for n in range(11, 21)]  # 1 of 10
        + [
            (ENTITY_ORDER, 1, "refund_abuse", "refund_abuse:1"),
            (ENTITY_ACTIVITY, 21, "refund_abuse", "refund_abuse:1"),
        ],
        columns=["entity_type", "entity_id", "kind", "episode_id"],
    )
    flagged = {1, 2, 11}
    scored = scores(
        [(ENTITY_ACTIVITY, n, "landed", n in flagged, n == 5) for n in range(1, 22)]
        + [(ENTITY_ORDER, 1, "landed", True, True)]
        + [(ENTITY_ACTIVITY, 100 + n, "simulator normal", n < 3, False) for n in range(200)]  # 3 of 200
        + [(ENTITY_ACTIVITY, 400, "simulator anomaly", True, True)]  # neither attack nor normal
        + [(ENTITY_ORDER, 500 + n, "simulator normal", False, False) for n in range(50)]
    )

    table = GeneralisationTable.of(truth, scored)

    scraping, refunds = table.per_kind.loc["slow_scraping"], table.per_kind.loc["refund_abuse"]
    assert (scraping["episodes"], scraping["caught"], scraping["rows"], scraping["rows_flagged"]) == (2, 1, 20, 3)
    assert (refunds["episodes"], refunds["caught"], refunds["rows"], refunds["rows_flagged"]) == (1, 1, 2, 1)
    assert table.per_kind.loc[["slow_scraping", "refund_abuse"], "caught"].sum() == 2
    assert table.normal_flagged == {ENTITY_ACTIVITY: (3, 200), ENTITY_ORDER: (0, 50)}
    assert table.per_detector.loc["slow_scraping", "zscore"] == pytest.approx(1 / 20)
    assert table.per_detector.loc["refund_abuse", "zscore"] == pytest.approx(1 / 2)
    # Kinds with no episode in this truth are listed (NaN) and left out of the mean.
    assert table.mean_episode_recall == pytest.approx((0.5 + 1.0) / 2)


def test_attack_rows_outside_the_scored_days_are_an_error_not_a_miss():
    truth = pd.DataFrame(
        [(ENTITY_ACTIVITY, 7, "search_spam", "search_spam:1")],
        columns=["entity_type", "entity_id", "kind", "episode_id"],
    )

    with pytest.raises(RuntimeError, match="outside the scored days"):
        GeneralisationTable.of(truth, scores([(ENTITY_ACTIVITY, 8, "landed", False, False)]))


def test_the_printed_table_lists_the_kinds_measured_and_their_mean(capsys):
    truth = pd.DataFrame(
        [
            (ENTITY_ORDER, 1, "price_tampering", "price_tampering:1"),
            (ENTITY_ORDER, 2, "price_tampering", "price_tampering:2"),
        ],
        columns=["entity_type", "entity_id", "kind", "episode_id"],
    )
    scored = scores([(ENTITY_ORDER, 1, "landed", True, False), (ENTITY_ORDER, 2, "landed", False, False)])

    GeneralisationTable.of(truth, scored).print()

    out = capsys.readouterr().out
    assert "| price_tampering |        2 |      1 |           0.50 |    2 |      0.500 |" in out
    assert "Mean episode recall over 1 kinds: 0.50" in out
    assert "slow_scraping" not in out
