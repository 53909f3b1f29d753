"""The held-out attack generator: deterministic per seed, its files land whole, its truth names stored rows."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from anomalens_dagster.assets.landing import check_ingest_conserves_rows, ingested_files
from anomalens_dagster.constants import ANOMALY_KINDS, ENTITY_ACTIVITY, ENTITY_ORDER
from anomalens_dagster.resources import AnomaLensDuckDB, LandingZone
from anomalens_dagster.settings import SettingsFile
from anomalens_dagster_tests.assets.conftest import materialize_store
from anomalens_dagster_tests.conftest import SMALL_SIMULATION
from benchmarks.attacks import (
    ATTACK_KIND_NAMES,
    SHOP_LANDING_SETTINGS,
    episode_rows,
    generate_attacks,
    load_store_view,
    write_shop_files,
)

HISTORY = ("2026-03-01", "2026-03-04")  # simulated: the first two days are history, the third is attacked
ATTACK_DAY = dt.date(2026, 3, 3)
NEXT_DAY = dt.date(2026, 3, 4)  # a second batch, whose victims may be accounts the first made
EPISODES = 5


@pytest.fixture(scope="module")
def simulated_store_file(tmp_path_factory) -> Path:
    """Four simulated days of the small store, built once for the module (copy it, never change it)."""
    path = tmp_path_factory.mktemp("attacked_store") / "anomalens.duckdb"
    tags = {"dagster/asset_partition_range_start": HISTORY[0], "dagster/asset_partition_range_end": HISTORY[1]}
    assert materialize_store(AnomaLensDuckDB(database=str(path)), dict(SMALL_SIMULATION), tags=tags).success
    return path


@pytest.fixture
def store(simulated_store_file, db_path) -> Path:
    shutil.copyfile(simulated_store_file, db_path)
    return db_path


def attacks(db_path: Path, seed: int, batch: int = 1, day: dt.date = ATTACK_DAY):
    with duckdb.connect(str(db_path), read_only=True) as conn:
        view = load_store_view(conn, day, day)
    return generate_attacks(view, seed=seed, batch=batch, episodes_per_kind=EPISODES)


def ingest(db_path: Path, landing_dir: Path, tmp_path: Path) -> dg.ExecuteInProcessResult:
    settings_path = tmp_path / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(SHOP_LANDING_SETTINGS))
    return dg.materialize(
        [ingested_files, check_ingest_conserves_rows],
        resources={
            "duckdb": AnomaLensDuckDB(database=str(db_path)),
            "landing": LandingZone(directory=str(landing_dir)),
            "settings": SettingsFile(path=str(settings_path)),
        },
    )


def test_the_generator_is_a_function_of_the_store_and_the_seed(store):
    first, again, other = attacks(store, seed=5), attacks(store, seed=5), attacks(store, seed=6)

    for table in ("customers", "orders", "order_items", "user_activities"):
        pd.testing.assert_frame_equal(getattr(first, table), getattr(again, table))
    assert first.episodes == again.episodes
    assert not first.user_activities["id"].isin(other.user_activities["id"]).any()
    assert len(first.user_activities) != len(other.user_activities) or not first.orders.equals(other.orders)


def test_every_kind_has_its_episodes_inside_the_window_and_none_is_a_simulator_kind(store):
    rows = attacks(store, seed=5)

    counts = pd.Series([episode.kind for episode in rows.episodes]).value_counts()
    assert set(counts.index) == set(ATTACK_KIND_NAMES)
    assert len(ATTACK_KIND_NAMES) >= 10 and (counts == EPISODES).all()
    assert not set(ATTACK_KIND_NAMES) & set(ANOMALY_KINDS)
    assert all(episode.activity_ids or episode.order_ids for episode in rows.episodes)
    times = pd.concat([rows.user_activities["timestamp"], rows.orders["created_at"]])
    assert times.min() >= pd.Timestamp(ATTACK_DAY) and times.max() < pd.Timestamp(ATTACK_DAY + dt.timedelta(days=1))


def test_the_shop_files_land_whole_and_the_truth_names_the_stored_rows(store, tmp_path):
    rows = attacks(store, seed=5)
    landing_dir = tmp_path / "landing"
    paths = write_shop_files(rows, landing_dir, "attacks-1")

    assert ingest(store, landing_dir, tmp_path).success
    with duckdb.connect(str(store), read_only=True) as conn:
        files = conn.execute(
            "SELECT file, rows_in, rows_loaded, rows_pending, rows_rejected, status FROM ops.ingested_files ORDER BY file"
        ).fetchall()
        truth = episode_rows(conn, rows)
        stored_customers = conn.execute(
            """SELECT m.source_id, o.id FROM store.orders o JOIN ops.id_map m ON m.kind = 'customers'
               AND m.id = o.customer_id WHERE o.source LIKE 'orders-attacks-1%'"""
        ).df()
    assert sorted(file for file, *_ in files) == sorted(path.name for path in paths)
    assert all(rows_in == loaded and pending == rejected == 0 and status == "loaded"
               for _, rows_in, loaded, pending, rejected, status in files)  # fmt: skip
    assert len(truth) == len(rows.user_activities) + len(rows.orders)
    assert truth.groupby("entity_type").size().to_dict() == {
        ENTITY_ACTIVITY: len(rows.user_activities),
        ENTITY_ORDER: len(rows.orders),
    }
    assert truth[["entity_type", "entity_id"]].drop_duplicates().shape[0] == len(truth)
    # New accounts' text ids resolved, through ops.id_map, to the customers on their orders.
    new_accounts_orders = rows.orders[rows.orders["customer_id"].map(lambda c: isinstance(c, str))]
    expected = dict(zip(new_accounts_orders["id"], new_accounts_orders["customer_id"], strict=True))
    assert dict(zip(stored_customers["id"], stored_customers["source_id"], strict=True)) == expected


def test_a_later_batch_names_accounts_an_earlier_one_made_by_the_shops_own_ids(store, tmp_path):
    landing_dir = tmp_path / "landing"
    first = attacks(store, seed=5)
    write_shop_files(first, landing_dir, "attacks-1")
    assert ingest(store, landing_dir, tmp_path).success
    with duckdb.connect(str(store), read_only=True) as conn:
        view = load_store_view(conn, NEXT_DAY, NEXT_DAY)
    later = generate_attacks(view, seed=5, batch=2, episodes_per_kind=EPISODES)
    write_shop_files(later, landing_dir, "attacks-2")

    assert ingest(store, landing_dir, tmp_path).success  # the first batch's files are delivered again too
    with duckdb.connect(str(store), read_only=True) as conn:
        refused = conn.execute("SELECT sum(rows_rejected + rows_pending) FROM ops.ingested_files").fetchone()[0]
        truth = episode_rows(conn, later)
    assert set(view.shop_ids.values()) >= set(first.customers["id"])
    assert refused == 0
    assert len(truth) == len(later.user_activities) + len(later.orders)
    # Victims are drawn from every account with a history, those the first batch made among them.
    named = set(later.orders["customer_id"]) | set(later.user_activities["customer_id"].dropna())
    assert named & set(view.shop_ids.values())
