"""Grouping a run's days into the short writes that replace them."""

from __future__ import annotations

import datetime as dt

from anomalens_dagster.assets.daily import describe_window, group_days, group_window

DAYS = [dt.date(2026, 3, 1) + dt.timedelta(days=offset) for offset in range(5)]


def test_days_are_grouped_up_to_the_event_budget_and_a_busier_day_stays_alone():
    events = dict(zip(DAYS, [40, 40, 150, 30, 30], strict=True))

    assert group_days(DAYS, events, budget=100) == [DAYS[0:2], DAYS[2:3], DAYS[3:5]]


def test_days_without_events_join_the_group_and_one_day_per_group_at_a_budget_of_one():
    assert group_days(DAYS, {}, budget=100) == [DAYS]
    assert group_days(DAYS, dict.fromkeys(DAYS, 5), budget=1) == [[day] for day in DAYS]


def test_a_group_window_spans_its_whole_days_and_reads_as_a_date_range():
    start, end = group_window(DAYS[1:4])

    assert (start, end) == (dt.datetime(2026, 3, 2), dt.datetime(2026, 3, 5))
    assert describe_window(start, end) == "2026-03-02..2026-03-04"
    assert describe_window(*group_window(DAYS[:1])) == "2026-03-01"
