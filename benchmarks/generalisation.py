"""Benchmark: episode recall on attacks the simulator never injects, landed as a shop's files into a held-out store.

Usage: .venv/bin/python -m benchmarks.generalisation [--workdir DIR] [--episodes 6]

Builds a store with the simulator at a seed used nowhere else (HELD_OUT_SEED), 20 days from
2026-09-01 at the default size, in a temporary folder (its own DuckDB file, Dagster instance,
landing folder and settings file, whose `landing` section maps the shop's column names), and
drives it with the `anomalens` commands a deployment uses:

1. `simulate_job` for the 20 days; `anomalens run --no-simulate` over the first 14 trains the
   eight detectors on those days alone and scores them.
2. Out of time: attack files (`benchmarks/attacks`, every kind, `--episodes` episodes each) for
   days 15-17 are dropped into the landing folder and `anomalens ingest --detect` loads and scores
   them with the models trained before they happened.
3. Poisoned window: a second batch of attacks is landed into days 3-14 (scored by the models in
   force, as production would), `anomalens run --no-simulate --retrain` recomputes the features of
   days 1-17 and retrains on that window, which now holds both batches, and fresh attacks landed
   into days 18-20 are scored.

For each pass it prints, per attack kind: episodes, episodes caught (the ensemble flags at least
20 % of the episode's activities and orders), episode recall, rows and row recall; the mean
episode recall over the kinds; and the share of normal rows flagged (the simulator's activities
and orders of the scored days, its own injected anomalies left out). Then the row recall of each
detector per kind. The ground truth is the generator's own episode list, mapped to stored ids
through `ops.id_map`. 2.9 CPU-minutes, most of it in the eight commands (10-13 minutes of wall
time on the 2-core machine while other jobs kept its load average near 25); the same figures on
every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import yaml

from anomalens_dagster.constants import (
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DUCKDB_PATH_ENV_VAR,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    LANDING_DIR_ENV_VAR,
    ORDERS,
    SETTINGS_ENV_VAR,
    SIMULATION_LABELS,
    SIMULATOR_SOURCE,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR, ensure_dagster_home
from benchmarks.attacks import (
    ATTACK_KIND_NAMES,
    DEFAULT_EPISODES_PER_KIND,
    SHOP_LANDING_SETTINGS,
    AttackRows,
    episode_rows,
    generate_attacks,
    load_store_view,
    write_shop_files,
)
from benchmarks.common import benchmark_folder, print_table

logger = logging.getLogger("benchmarks.generalisation")

HELD_OUT_SEED = 31337  # the store's simulation seed: used nowhere else in the repository
ATTACK_SEED = 90211  # the attack generator's seed
FIRST_DAY = dt.date(2026, 9, 1)
TRAINING_DAYS = 14  # days 1-14: the first models' training window
TEST_DAYS = 3  # days 15-17 attacked out of time, then 18-20 after the poisoned retraining
POISON_FROM_DAY = 3  # poisoning attacks land in days 3-14 (days 1-2 are their history)
CAUGHT_SHARE = 0.2  # an episode is caught when the ensemble flags at least this share of its rows
_SCORES = {  # entity type -> (store table, time column, scores table, id column)
    ENTITY_ACTIVITY: (USER_ACTIVITIES, "timestamp", "activity_scores", "activity_id"),
    ENTITY_ORDER: (ORDERS, "created_at", "order_scores", "order_id"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="Keep the store, instance and logs here (default: temp).")
    parser.add_argument("--episodes", type=int, default=DEFAULT_EPISODES_PER_KIND, help="Episodes per kind and batch.")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="Simulation seed of the held-out store.")
    parser.add_argument("--attack-seed", type=int, default=ATTACK_SEED, help="Seed of the attack generator.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    with benchmark_folder(args.workdir) as folder:
        run(folder, args.seed, args.attack_seed, args.episodes)


def run(folder: Path, seed: int, attack_seed: int, episodes: int) -> None:
    started = time.perf_counter()
    bench = HeldOutStore(folder, seed)
    last_test, last_fresh = TRAINING_DAYS + TEST_DAYS, TRAINING_DAYS + 2 * TEST_DAYS

    bench.command("simulate", bench.dagster_bin, "job", "execute", "-m", "anomalens_dagster.definitions",
                  "-j", "simulate_job", "--tags", json.dumps(bench.range_tags(day(1), day(last_fresh))))  # fmt: skip
    bench.anomalens(
        "train", "run", "--no-simulate", "--days", str(TRAINING_DAYS), "--end-date", str(day(TRAINING_DAYS))
    )

    first_test = day(TRAINING_DAYS + 1)
    attacks = bench.land("out-of-time", first_test, day(last_test), attack_seed, batch=1, episodes=episodes)
    clean = bench.measure(attacks, first_test, day(last_test))

    bench.land("poison", day(POISON_FROM_DAY), day(TRAINING_DAYS), attack_seed, batch=2, episodes=episodes)
    # Features of the whole window again: a feature that looks back over days sees the attacks landed since.
    bench.anomalens(
        "retrain", "run", "--no-simulate", "--retrain", "--days", str(last_test), "--end-date", str(day(last_test))
    )
    first_fresh = day(last_test + 1)
    fresh = bench.land("after-retraining", first_fresh, day(last_fresh), attack_seed, batch=3, episodes=episodes)
    poisoned = bench.measure(fresh, first_fresh, day(last_fresh))

    print(f"\nHeld-out store: simulation seed {seed}, {FIRST_DAY} .. {day(last_fresh)}, default size; attack seed "
          f"{attack_seed}, {episodes} episodes per kind and batch.")  # fmt: skip
    print(f"\nOut of time: trained on {day(1)} .. {day(TRAINING_DAYS)}, attacks landed into {first_test} .. "
          f"{day(last_test)}\n")  # fmt: skip
    clean.print()
    print(f"\nAfter retraining on a poisoned window: attacks landed into {day(POISON_FROM_DAY)} .. "
          f"{day(last_test)}, retrained on the days up to {day(last_test)}, fresh attacks in {first_fresh} .. "
          f"{day(last_fresh)}\n")  # fmt: skip
    poisoned.print()
    print(f"\nWall time {time.perf_counter() - started:,.0f} s")


def day(n: int) -> dt.date:
    """Day `n` of the held-out store (day 1 is FIRST_DAY)."""
    return FIRST_DAY + dt.timedelta(days=n - 1)


class HeldOutStore:
    """A store in `folder`, driven through the `anomalens` and `dagster` commands with its own settings."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder = folder.resolve()
        self.db_path = self.folder / "anomalens.duckdb"
        self.landing = self.folder / "landing"
        self.logs = self.folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        settings = self.folder / "settings.yaml"
        settings.write_text(yaml.safe_dump({"simulation": {"seed": seed}, **SHOP_LANDING_SETTINGS}, sort_keys=False))
        self.env = {
            **os.environ,
            DUCKDB_PATH_ENV_VAR: str(self.db_path),
            LANDING_DIR_ENV_VAR: str(self.landing),
            SETTINGS_ENV_VAR: str(settings),
            DAGSTER_HOME_ENV_VAR: str(ensure_dagster_home(self.folder / "dagster_home")),
        }
        self.dagster_bin = str(Path(sys.executable).with_name("dagster"))

    @staticmethod
    def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
        return {"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)}

    def command(self, step: str, *args: str) -> None:
        """Run a command in the store's folder and environment; its output goes to logs/<step>.log."""
        log = self.logs / f"{step}.log"
        logger.info("%s: %s", step, " ".join(Path(args[0]).name if n == 0 else a for n, a in enumerate(args)))
        with log.open("w") as out:
            done = subprocess.run(args, cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode:
            tail = "\n".join(log.read_text().splitlines()[-30:])
            raise RuntimeError(f"{step} failed (exit {done.returncode}); the end of {log}:\n{tail}")

    def anomalens(self, step: str, *args: str) -> None:
        self.command(step, str(Path(sys.executable).with_name("anomalens")), *args)

    def land(self, name: str, first: dt.date, last: dt.date, seed: int, batch: int, episodes: int) -> AttackRows:
        """Generate a batch of attacks on days first..last, drop its files into the landing folder and
        `anomalens ingest --detect` them (load, score the days they changed with the models in force)."""
        with duckdb.connect(str(self.db_path), read_only=True) as conn:
            view = load_store_view(conn, first, last)
        rows = generate_attacks(view, seed=seed, batch=batch, episodes_per_kind=episodes)
        write_shop_files(rows, self.landing, f"{name}-{first:%Y%m%d}")
        logger.info("%s: %d activities and %d orders in %d episodes", name, len(rows.user_activities),
                    len(rows.orders), len(rows.episodes))  # fmt: skip
        self.anomalens(f"ingest-{name}", "ingest", "--detect")
        with duckdb.connect(str(self.db_path), read_only=True) as conn:
            # Every delivery so far (earlier files are delivered again, as they stay in the folder).
            refused = conn.execute("SELECT sum(rows_rejected + rows_pending) FROM ops.ingested_files").fetchone()[0]
        if refused:
            raise RuntimeError(f"{refused} landed rows were rejected or left pending: see ops.ingest_rejections")
        return rows

    def measure(self, rows: AttackRows, first: dt.date, last: dt.date) -> GeneralisationTable:
        with duckdb.connect(str(self.db_path), read_only=True) as conn:
            truth = episode_rows(conn, rows)
            scored = scored_rows(conn, first, last)
        return GeneralisationTable.of(truth, scored)


def scored_rows(conn: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Every activity and order of days first..last with each detector's flag: entity_type, entity_id,
    origin ('landed': from files, attacks included; 'simulator normal'; 'simulator anomaly': one of the
    simulator's own injected rows), detector, is_anomaly.

    Raises when a row of those days has no ensemble score (the days were not all scored)."""
    window = {"start": dt.datetime.combine(first, dt.time()), "end": dt.datetime.combine(last, dt.time.max)}
    parts = []
    for entity_type, (table, time_column, scores, id_column) in _SCORES.items():
        parts.append(
            conn.execute(
                f"""SELECT $entity AS entity_type, e.id AS entity_id,
                           CASE WHEN e.source <> $simulator THEN 'landed'
                                WHEN l.entity_id IS NOT NULL THEN 'simulator anomaly'
                                ELSE 'simulator normal' END AS origin,
                           s.detector, s.is_anomaly
                    FROM {STORE_SCHEMA}.{table} e
                    LEFT JOIN {DETECTIONS_SCHEMA}.{scores} s ON s.{id_column} = e.id
                    LEFT JOIN (SELECT DISTINCT entity_id FROM {STORE_SCHEMA}.{SIMULATION_LABELS}
                               WHERE entity_type = $entity) l ON l.entity_id = e.id
                    WHERE e.{time_column} BETWEEN $start AND $end""",
                {"entity": entity_type, "simulator": SIMULATOR_SOURCE, **window},
            ).df()
        )
    scored = pd.concat(parts, ignore_index=True)
    unscored = scored[scored["detector"].isna()]
    if len(unscored):
        raise RuntimeError(f"{len(unscored)} rows of {first} .. {last} have no scores, e.g. {unscored.head(3)}")
    return scored


class GeneralisationTable:
    """Per attack kind: episodes caught and rows flagged by the ensemble; normal rows flagged; per-detector recall."""

    def __init__(self, per_kind: pd.DataFrame, normal_flagged: dict[str, tuple[int, int]], per_detector: pd.DataFrame):
        self.per_kind = per_kind
        self.normal_flagged = normal_flagged
        self.per_detector = per_detector

    @classmethod
    def of(cls, truth: pd.DataFrame, scored: pd.DataFrame) -> GeneralisationTable:
        flags = scored.pivot_table(
            index=["entity_type", "entity_id"], columns="detector", values="is_anomaly", aggfunc="max"
        ).astype(bool)
        attack = truth.join(flags, on=["entity_type", "entity_id"], how="left")
        if attack[DETECTOR_ENSEMBLE].isna().any():
            raise RuntimeError("some attack rows lie outside the scored days")
        episodes = attack.groupby(["kind", "episode_id"])[DETECTOR_ENSEMBLE].mean().reset_index(name="share")
        episodes["caught"] = episodes["share"] >= CAUGHT_SHARE
        per_kind = pd.DataFrame(
            {
                "episodes": episodes.groupby("kind").size(),
                "caught": episodes.groupby("kind")["caught"].sum(),
                "rows": attack.groupby("kind").size(),
                "rows_flagged": attack.groupby("kind")[DETECTOR_ENSEMBLE].sum(),
            }
        ).reindex(ATTACK_KIND_NAMES)
        normal = scored[(scored["origin"] == "simulator normal") & (scored["detector"] == DETECTOR_ENSEMBLE)]
        normal_flagged = {
            entity: (int(group["is_anomaly"].sum()), len(group)) for entity, group in normal.groupby("entity_type")
        }
        detectors = [name for name in flags.columns if name != DETECTOR_ENSEMBLE]
        per_detector = attack.groupby("kind")[detectors].mean().reindex(ATTACK_KIND_NAMES)
        return cls(per_kind, normal_flagged, per_detector)

    @property
    def mean_episode_recall(self) -> float:
        return float((self.per_kind["caught"] / self.per_kind["episodes"]).mean())

    def print(self) -> None:
        rows = [
            (kind, int(r.episodes), int(r.caught), f"{r.caught / r.episodes:.2f}", int(r.rows),
             f"{r.rows_flagged / r.rows:.3f}")
            for kind, r in self.per_kind.dropna(subset=["episodes"]).iterrows()
        ]  # fmt: skip
        print_table(["attack kind", "episodes", "caught", "episode recall", "rows", "row recall"], rows)
        kinds = int(self.per_kind["episodes"].notna().sum())
        print(f"\nMean episode recall over {kinds} kinds: {self.mean_episode_recall:.2f}")
        for entity, (flagged, total) in sorted(self.normal_flagged.items()):
            print(f"Normal {entity} rows flagged: {flagged:,} of {total:,} ({flagged / total:.2%})")
        print("\nRow recall per detector (share of the kind's rows each detector flags):\n")
        print_table(
            ["attack kind", *self.per_detector.columns],
            [(kind, *(f"{value:.3f}" for value in r)) for kind, r in self.per_detector.dropna(how="all").iterrows()],
        )


if __name__ == "__main__":
    main()
