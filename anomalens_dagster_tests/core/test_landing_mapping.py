"""The landing settings section and the rules for a store's own words: mappings, timestamps, vocabularies."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from anomalens_dagster.configs import SettingsFileError, validate_settings
from anomalens_dagster.constants import ORDERS, USER_ACTIVITIES
from anomalens_dagster.core.landing import (
    LandingSettings,
    LandingSettingsError,
    parse_timestamps,
    read_landing_file,
    validate_rows,
)
from anomalens_dagster.core.landing.mapping import EPOCH_MILLISECONDS_FROM

MAPPING = {
    "orders": {
        "columns": {"order_number": "id", "Buyer_ID": "customer_id", "placed_at": "created_at"},
        "values": {"status": {"WC-Completed": "delivered"}},
    },
    "user_activities": {"values": {"action_type": {"page_view": "view_page"}}},
}


def test_a_mapping_renames_their_columns_and_maps_their_values_case_insensitively(tmp_path):
    path = tmp_path / "orders-shop.csv"
    path.write_text(
        "ORDER_NUMBER,buyer_id,placed_at,total_amount,status\n"
        "7,1,2026-03-01T10:00:00Z,5.0, wc-completed \n"
        "8,1,2026-03-01T10:00:00Z,5.0,SHIPPED\n"
    )

    raw = read_landing_file(path, LandingSettings.from_section(MAPPING).mapping(ORDERS))

    assert raw.rows[["id", "customer_id", "created_at"]].values.tolist() == [
        ["7", "1", "2026-03-01T10:00:00Z"],
        ["8", "1", "2026-03-01T10:00:00Z"],
    ]
    assert raw.rows["status"].tolist() == ["delivered", "SHIPPED"]  # unmapped values stay for validation


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"orders": {"columns": {"buyer_id": "custmer_id"}}}, "unknown column 'custmer_id'"),
        ({"orders": {"values": {"state": {"a": "b"}}}}, "unknown column 'state'"),
        ({"orders": {"colums": {}}}, "unknown key(s) colums in landing.orders"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"pending_max_age_days": 0}, "pending_max_age_days must be a positive number"),
    ],
)
def test_a_typo_in_the_landing_section_fails_naming_it(section, named):
    with pytest.raises(LandingSettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        LandingSettings.from_section(section)
    with pytest.raises(SettingsFileError, match="section 'landing'"):
        validate_settings({"landing": section}, source="settings.yaml")


def test_an_unknown_kind_in_the_landing_section_fails_naming_it():
    with pytest.raises(SettingsFileError, match="unknown key 'order' in section 'landing'"):
        validate_settings({"landing": {"order": {}}}, source="settings.yaml")


def test_the_settings_file_accepts_the_landing_section_of_the_readme():
    assert validate_settings({"landing": MAPPING}, source="settings.yaml") == {"landing": MAPPING}


def test_epoch_seconds_and_milliseconds_are_told_apart_by_magnitude():
    moment = dt.datetime(2026, 3, 1, 10, 0, 0)
    seconds = int(moment.replace(tzinfo=dt.UTC).timestamp())
    text = pd.Series([str(seconds), str(seconds * 1000), str(seconds * 1000 + 250), "99999999999", "1e5"])

    parsed = parse_timestamps(text)

    assert parsed[:3].tolist() == [
        pd.Timestamp(moment),
        pd.Timestamp(moment),
        pd.Timestamp(moment) + pd.Timedelta(250, "ms"),
    ]
    # The boundary: just below it, seconds (the year 5138, beyond what the store holds: not a
    # timestamp); from it on, milliseconds.
    assert pd.isna(parsed[3])
    assert parse_timestamps(pd.Series([str(EPOCH_MILLISECONDS_FROM)]))[0] == pd.Timestamp("1973-03-03 09:46:40")
    assert pd.isna(parsed[4])  # not a plain number, not ISO 8601


def test_naive_timestamps_are_in_the_landing_timezone_and_offsets_win():
    text = pd.Series(["2026-03-01 10:00:00", "2026-03-01T10:00:00+00:00", "2026-07-01T10:00", "2026-03-01"])

    parsed = parse_timestamps(text, "Europe/Paris")

    assert parsed.tolist() == [
        pd.Timestamp("2026-03-01 09:00"),  # winter: UTC+1
        pd.Timestamp("2026-03-01 10:00"),
        pd.Timestamp("2026-07-01 08:00"),  # summer: UTC+2
        pd.Timestamp("2026-02-28 23:00"),  # a date alone is its midnight there
    ]
    assert parse_timestamps(text[:1]).tolist() == [pd.Timestamp("2026-03-01 10:00")]  # default UTC


def test_a_wall_clock_time_the_zone_skips_is_not_a_timestamp():
    assert pd.isna(parse_timestamps(pd.Series(["2026-03-29 02:30:00"]), "Europe/Paris")[0])


def test_status_is_free_text_and_action_types_match_case_insensitively():
    def in_store(table, ids):
        return ids

    orders = pd.DataFrame(
        {"file": "orders.csv", "line": [2, 3, 4], "id": ["1", "2", "3"], "customer_id": ["1"] * 3}
        | {"created_at": ["2026-03-01T10:00:00Z"] * 3, "total_amount": ["1"] * 3}
        | {"status": [" Completed ", "SHIPPED", "refunded"]}
    )
    activities = pd.DataFrame(
        {"file": "user_activities.csv", "line": [2, 3], "id": ["1", "2"], "customer_id": [None, None]}
        | {"session_id": [None, None], "timestamp": ["2026-03-01T10:00:00Z"] * 2}
        | {"action_type": ["View_Page", "wishlist_add"], "details": [None, None]}
        | {"ip_address": [None, None], "user_agent": [None, None]}
    )
    now = dt.datetime(2026, 3, 10)

    order_rows = validate_rows(ORDERS, orders, now=now, in_store=in_store)
    activity_rows = validate_rows(USER_ACTIVITIES, activities, now=now, in_store=in_store)

    assert order_rows.good["status"].tolist() == ["completed", "shipped", "refunded"]
    assert order_rows.unknown_values == {"status": {"completed": 1, "refunded": 1}}
    assert activity_rows.good["action_type"].tolist() == ["view_page", "wishlist_add"]
    assert activity_rows.unknown_values == {"action_type": {"wishlist_add": 1}}
    assert order_rows.rejections.empty and activity_rows.rejections.empty
