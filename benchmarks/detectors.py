"""Benchmark: fit and score every detector on the 30-day store, with default settings.

Usage: .venv/bin/python -m benchmarks.detectors [--days 30]
Builds the store and features of `benchmarks.simulate` (≈1M activities, 100k orders), then, for
each entity and detector, in a fresh process (so peak RSS is that detector's own): trains on the
default training sample (`TrainingConfig`: 30 days, at most 200k rows), scores every row of the 30
days and scores a 100k-row sample as one big day would be. Prints fit seconds, the 100k-row
day's scoring time and the peak RSS up to then (fit + day), the whole window's scoring rows/s, and
the peak RSS once all rows were loaded and scored.
"""

import argparse
import datetime as dt
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import duckdb

from anomalens_dagster.configs import DetectionConfig, TrainingConfig
from anomalens_dagster.constants import DETECTOR_NAMES, ENTITY_TYPES
from anomalens_dagster.core.detectors import make_detector
from anomalens_dagster.core.simulator import simulate_catalog
from anomalens_dagster.core.training import ENTITY_FEATURES, load_feature_sample, load_training_frame
from anomalens_dagster.core.warehouse import replace_catalog
from benchmarks.common import peak_rss_mb, print_table, stopwatch
from benchmarks.features import materialize, order_frames
from benchmarks.simulate import BENCHMARK_SETTINGS, FIRST_DAY, write_days

DAY_ROWS = 100_000


def fit_and_score(db: str, entity_type: str, detector: str) -> dict:
    """Runs in a fresh process: train, score a 100k-row day, then score the whole window."""
    training_config, detection_config = TrainingConfig(), DetectionConfig()
    entity = ENTITY_FEATURES[entity_type]
    with duckdb.connect(db, read_only=True) as conn:
        training = load_training_frame(
            conn, entity, training_config.training_days, training_config.max_training_rows, training_config.seed
        )
    model = make_detector(
        detector,
        entity.numeric,
        entity.categorical,
        **detection_config.detector_params(detector, training_config.seed, entity.entity_type),
    )
    with stopwatch() as fit_seconds:
        model.fit(training.frame)
    with duckdb.connect(db, read_only=True) as conn:
        day = load_feature_sample(conn, entity, training.start, training.end, max_rows=DAY_ROWS, seed=0).frame
    with stopwatch() as day_seconds:
        model.score(day)
    day_peak = peak_rss_mb()
    with duckdb.connect(db, read_only=True) as conn:
        everything = load_feature_sample(conn, entity, training.start, training.end).frame
    with stopwatch() as score_seconds:
        flags = model.predict(everything)
    return {
        "entity": entity_type,
        "detector": detector,
        "training_rows": model.training_metrics_["n_rows"],
        "fit_s": fit_seconds[0],
        "day_rows": len(day),
        "day_score_s": day_seconds[0],
        "day_peak_rss_mb": day_peak,
        "scored_rows": len(everything),
        "score_rows_per_s": len(everything) / score_seconds[0],
        "flagged_share": float(flags.mean()),
        "peak_rss_mb": peak_rss_mb(),
    }


def build_store(db: Path, days: list[dt.date]) -> None:
    catalog = simulate_catalog(BENCHMARK_SETTINGS)
    start = dt.datetime.combine(days[0], dt.time())
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time())
    from anomalens_dagster.core.features import iter_activity_features, write_day_summaries

    with duckdb.connect(str(db)) as conn:
        replace_catalog(
            conn, {"categories": catalog.categories, "products": catalog.products, "customers": catalog.customers}
        )
        write_days(conn, days, catalog)
        write_day_summaries(conn, start, end)
        materialize(conn, "activity_features", "timestamp", iter_activity_features, start, end)
        materialize(conn, "order_features", "created_at", order_frames, start, end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    db = Path(folder.name) / "bench.duckdb"
    build_store(db, [FIRST_DAY + dt.timedelta(days=i) for i in range(args.days)])

    results = []
    spawn = multiprocessing.get_context("spawn")
    for entity_type in ENTITY_TYPES:
        for detector in DETECTOR_NAMES:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                results.append(pool.submit(fit_and_score, str(db), entity_type, detector).result())

    print(
        f"Detectors with default settings on {args.days} days ({BENCHMARK_SETTINGS.activities_per_day:,} "
        f"activities/day, {BENCHMARK_SETTINGS.orders_per_day:,} orders/day)\n"
    )
    print_table(
        [
            "entity",
            "detector",
            "training rows",
            "fit s",
            "100k-row day s",
            "peak RSS MiB (fit + day)",
            "scored rows",
            "score rows/s",
            "flagged share",
            "peak RSS MiB (all)",
        ],
        [
            (
                r["entity"],
                r["detector"],
                r["training_rows"],
                r["fit_s"],
                r["day_score_s"],
                r["day_peak_rss_mb"],
                r["scored_rows"],
                r["score_rows_per_s"],
                f"{r['flagged_share']:.2%}",
                r["peak_rss_mb"],
            )
            for r in results
        ],
    )


if __name__ == "__main__":
    main()
