"""Tier-1 tests of the anomaly report: hand-built detections tables in a DuckDB file in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import duckdb
import numpy as np
import pandas as pd
import plotly.offline
import pytest

from anomalens_dagster.constants import (
    ANOMALY_KIND_BURST,
    ANOMALY_KIND_HIGH_TOTAL,
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
    ENSEMBLE_THRESHOLD,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
)
from anomalens_dagster.core.evaluation import evaluate_splits
from anomalens_dagster.core.incident_tables import replace_incidents
from anomalens_dagster.core.incidents import group_incidents
from anomalens_dagster.core.report import (
    ReportInputs,
    ReportInputsError,
    load_report_inputs,
    render_anomaly_report,
    write_report,
)

DETECTORS = (*DETECTOR_NAMES, DETECTOR_ENSEMBLE)
Z, IF, DB, AE, ENS = DETECTORS
DAY = dt.datetime(2026, 1, 1)
GENERATED_AT = dt.datetime(2026, 1, 2, 6, 0, tzinfo=dt.UTC)
XSS = "<script>alert('x')</script> & co"

# Registered thresholds (version 1 scored everything; version 2 was trained later and scored nothing).
THRESHOLDS = {
    ENTITY_ACTIVITY: {Z: 3.0, IF: 0.6123, DB: 0.5, AE: 0.7071},
    ENTITY_ORDER: {Z: 3.0, IF: 0.5876, DB: 0.5, AE: 11.57},
}
THRESHOLDS_V2 = {Z: 9.0, IF: 0.9, DB: 0.9, AE: 99.0}

# Six scored activities and the detectors that flag each. Activity 7 is in the store but unscored.
ACTIVITY_TIMES = {
    1: DAY + dt.timedelta(hours=10, minutes=5),
    2: DAY + dt.timedelta(hours=10, minutes=20),
    3: DAY + dt.timedelta(hours=10, minutes=40),
    4: DAY + dt.timedelta(hours=11, minutes=10),
    5: DAY + dt.timedelta(hours=11, minutes=50),
    6: DAY + dt.timedelta(hours=13, minutes=30),
}
UNSCORED_ACTIVITY = (7, DAY + dt.timedelta(hours=13, minutes=45))
ACTIVITY_FLAGS = {1: {Z, IF, ENS}, 2: {Z}, 3: set(), 4: {Z, IF, ENS}, 5: {DB}, 6: set()}
ACTIVITY_LABELS = {1: ANOMALY_KIND_BURST, 5: ANOMALY_KIND_BURST}

ORDER_TIMES = {101: DAY + dt.timedelta(hours=10, minutes=30), 102: DAY + dt.timedelta(hours=12, minutes=15)}
ORDER_FLAGS = {101: {Z, ENS}, 102: set()}
ORDER_LABELS = {101: ANOMALY_KIND_HIGH_TOTAL}


def scores_frame(entity_type: str, times: dict, flags: dict) -> pd.DataFrame:
    """Flagged rows score twice their threshold, the others half of it."""
    rows = []
    for entity_id, at in times.items():
        for detector in DETECTORS:
            threshold = 1.0 if detector == DETECTOR_ENSEMBLE else THRESHOLDS[entity_type][detector]
            flagged = detector in flags[entity_id]
            rows.append(
                {
                    "entity_id": entity_id,
                    "time": at,
                    "detector": detector,
                    "score": threshold * (2.0 if flagged else 0.5) + entity_id * 1e-3,
                    "is_anomaly": flagged,
                    "model_version": 0 if detector == DETECTOR_ENSEMBLE else 1,
                }
            )
    return pd.DataFrame(rows)


def create_scores(conn: duckdb.DuckDBPyConnection, table: str, id_column: str, time_column: str, frame) -> None:
    conn.register("incoming", frame)
    conn.execute(
        f"CREATE TABLE detections.{table} AS SELECT entity_id::BIGINT AS {id_column}, time AS {time_column}, "
        "detector, score, is_anomaly, model_version::BIGINT AS model_version FROM incoming"
    )
    conn.unregister("incoming")


def labels_frame() -> pd.DataFrame:
    rows = [
        (ENTITY_ACTIVITY, entity_id, kind, f"{kind}:{entity_id}") for entity_id, kind in ACTIVITY_LABELS.items()
    ] + [(ENTITY_ORDER, entity_id, kind, f"{kind}:{entity_id}") for entity_id, kind in ORDER_LABELS.items()]
    return pd.DataFrame(rows, columns=["entity_type", "entity_id", "anomaly_kind", "episode_id"]).astype(
        {"entity_id": "int64"}
    )


def build_store(path, *, optional_tables: bool = True, labelled: bool = True) -> None:
    """The detections tables in the shapes the pipeline writes; with `optional_tables`, also the store,
    labels (none unless `labelled`), model registry, evaluation and anomaly records."""
    activity_scores = scores_frame(ENTITY_ACTIVITY, ACTIVITY_TIMES, ACTIVITY_FLAGS)
    order_scores = scores_frame(ENTITY_ORDER, ORDER_TIMES, ORDER_FLAGS)
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA detections; CREATE SCHEMA store; CREATE SCHEMA ml")
        create_scores(conn, "activity_scores", "activity_id", "timestamp", activity_scores)
        create_scores(conn, "order_scores", "order_id", "created_at", order_scores)
        if not optional_tables:
            return
        conn.execute("CREATE TABLE store.user_activities (id BIGINT, timestamp TIMESTAMP, action_type VARCHAR)")
        conn.executemany(
            "INSERT INTO store.user_activities VALUES (?, ?, 'login')", [*ACTIVITY_TIMES.items(), UNSCORED_ACTIVITY]
        )
        conn.execute("CREATE TABLE store.orders (id BIGINT, created_at TIMESTAMP, total_amount DOUBLE)")
        conn.executemany("INSERT INTO store.orders VALUES (?, ?, 10.0)", list(ORDER_TIMES.items()))
        labels = labels_frame() if labelled else labels_frame().iloc[0:0]
        conn.register("labels", labels)
        conn.execute("CREATE TABLE store.simulation_labels AS SELECT * FROM labels")
        conn.execute(
            "CREATE TABLE ml.model_registry (detector VARCHAR, entity_type VARCHAR, version INTEGER, metrics JSON)"
        )
        for entity_type, thresholds in THRESHOLDS.items():
            for detector, threshold in thresholds.items():
                for version, value in ((1, threshold), (2, THRESHOLDS_V2[detector])):
                    conn.execute(
                        "INSERT INTO ml.model_registry VALUES (?, ?, ?, ?)",
                        [detector, entity_type, version, json.dumps({"threshold": value, "n_rows": 10})],
                    )
        scores = pd.concat(
            [
                activity_scores.assign(entity_type=ENTITY_ACTIVITY),
                order_scores.assign(entity_type=ENTITY_ORDER),
            ]
        )
        scored = scores.astype({"entity_id": "int64"}).assign(out_of_time=False)
        evaluation = evaluate_splits(scored, labels)
        conn.register("evaluation", evaluation)
        conn.execute("CREATE TABLE detections.detector_evaluation AS SELECT * FROM evaluation")
        conn.execute(
            """CREATE TABLE detections.anomalies (entity_type VARCHAR, entity_id BIGINT, detector_name VARCHAR,
                   description VARCHAR, severity VARCHAR, anomaly_score DOUBLE, event_timestamp TIMESTAMP)"""
        )
        conn.executemany(
            "INSERT INTO detections.anomalies VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (ENTITY_ACTIVITY, 1, Z, "zscore sentence for 1", "Medium", 6.0, ACTIVITY_TIMES[1]),
                (ENTITY_ACTIVITY, 1, ENS, XSS, "High", 1.6, ACTIVITY_TIMES[1]),
                (ENTITY_ACTIVITY, 4, Z, "weaker zscore sentence for 4", "Low", 6.0, ACTIVITY_TIMES[4]),
                (ENTITY_ACTIVITY, 4, IF, "stronger forest sentence for 4", "Low", 9.0, ACTIVITY_TIMES[4]),
                (
                    ENTITY_ORDER,
                    101,
                    Z,
                    "Order total 4,512.00 is 38x what its 3 items cost",
                    "High",
                    6.0,
                    ORDER_TIMES[101],
                ),
            ],
        )
        conn.execute(
            """CREATE TABLE detections.consolidated_anomalies AS SELECT * FROM (VALUES
                   ('activity', 1::BIGINT, 'ensemble,isolation_forest,zscore', 3::BIGINT, 'High', 1.6, $t1),
                   ('activity', 4::BIGINT, 'isolation_forest,zscore', 2::BIGINT, 'Medium', 2.4, $t4),
                   ('activity', 2::BIGINT, 'zscore', 1::BIGINT, 'Low', 0.9, $t2),
                   ('order', 101::BIGINT, 'ensemble,zscore', 2::BIGINT, 'High', 1.2, $t101))
               AS t(entity_type, entity_id, detectors, n_detectors, overall_severity, ensemble_score, event_timestamp)""",
            {"t1": ACTIVITY_TIMES[1], "t4": ACTIVITY_TIMES[4], "t2": ACTIVITY_TIMES[2], "t101": ORDER_TIMES[101]},
        )


@pytest.fixture
def store(db_path):
    build_store(db_path)
    return db_path


def load(path, **kwargs) -> ReportInputs:
    with duckdb.connect(str(path), read_only=True) as conn:
        return load_report_inputs(conn, **kwargs)


def hour(h: int) -> pd.Timestamp:
    return pd.Timestamp(DAY + dt.timedelta(hours=h))


def timeline_of(inputs: ReportInputs, entity_type: str) -> list[tuple]:
    frame = inputs.timeline[inputs.timeline["entity_type"] == entity_type]
    return [
        (pd.Timestamp(row.hour), row.n_events, row.n_scored, row.n_flagged, row.n_labelled)
        for row in frame.itertuples(index=False)
    ]


def agreement_of(inputs: ReportInputs, entity_type: str) -> dict[str, tuple[int, int, int]]:
    frame = inputs.agreement[inputs.agreement["entity_type"] == entity_type]
    return {row.detectors: (row.n_detectors, row.n_entities, row.n_ensemble) for row in frame.itertuples(index=False)}


# --- Loading -------------------------------------------------------------------------------------


def test_timeline_counts_events_scored_rows_ensemble_flags_and_labels_per_hour_filling_empty_hours(store):
    inputs = load(store)

    # (hour, events in the store, scored, flagged by the ensemble, injected)
    assert timeline_of(inputs, ENTITY_ACTIVITY) == [
        (hour(10), 3, 3, 1, 1),
        (hour(11), 2, 2, 1, 1),
        (hour(12), 0, 0, 0, 0),
        (hour(13), 2, 1, 0, 0),  # activity 7 is in the store but was never scored
    ]
    assert timeline_of(inputs, ENTITY_ORDER) == [(hour(10), 1, 1, 1, 1), (hour(11), 0, 0, 0, 0), (hour(12), 1, 1, 0, 0)]


def test_agreement_puts_every_flagged_entity_under_exactly_its_combination_of_detectors(store):
    inputs = load(store)

    # Activities 1 and 4: zscore + forest (and the ensemble); 2: zscore alone; 5: dbscan alone.
    assert agreement_of(inputs, ENTITY_ACTIVITY) == {
        "isolation_forest,zscore": (2, 2, 2),
        "zscore": (1, 1, 0),
        "dbscan": (1, 1, 0),
    }
    assert agreement_of(inputs, ENTITY_ORDER) == {"zscore": (1, 1, 1)}


def test_score_summary_counts_rows_and_flags_exactly_per_detector(store):
    summary = load(store).score_summary.set_index(["entity_type", "detector"])

    assert summary.loc[(ENTITY_ACTIVITY, Z), ["n_rows", "n_flagged"]].tolist() == [6, 3]
    assert summary.loc[(ENTITY_ACTIVITY, DB), ["n_rows", "n_flagged"]].tolist() == [6, 1]
    assert summary.loc[(ENTITY_ACTIVITY, ENS), ["n_rows", "n_flagged"]].tolist() == [6, 2]
    assert summary.loc[(ENTITY_ORDER, Z), ["n_rows", "n_flagged"]].tolist() == [2, 1]
    assert summary.loc[(ENTITY_ACTIVITY, Z), "max_score"] == pytest.approx(6.004)


def test_score_sample_draws_n_rows_per_detector_keeps_every_flagged_row_and_repeats_with_its_seed(store):
    first = load(store, sample_rows=2)
    again = load(store, sample_rows=2)
    other_seed = load(store, sample_rows=2, seed=123)

    sample = first.score_sample
    activity_zscore = sample[(sample["entity_type"] == ENTITY_ACTIVITY) & (sample["detector"] == Z)]
    assert int(activity_zscore["in_sample"].sum()) == 2
    assert int(activity_zscore["is_anomaly"].sum()) == 3  # every flagged row, sampled or not
    assert len(activity_zscore) == 2 + int((~activity_zscore["in_sample"] & activity_zscore["is_anomaly"]).sum())
    pd.testing.assert_frame_equal(first.score_sample, again.score_sample)
    assert first.score_sample["score"].sum() != other_seed.score_sample["score"].sum()


def test_thresholds_are_those_of_the_registered_version_that_scored_and_the_ensembles_is_its_constant(store):
    thresholds = load(store).thresholds.set_index(["entity_type", "detector"])

    assert thresholds.loc[(ENTITY_ACTIVITY, IF), "threshold"] == pytest.approx(0.6123)  # v1, not v2's 0.9
    assert thresholds.loc[(ENTITY_ORDER, AE), "threshold"] == pytest.approx(11.57)
    assert thresholds.loc[(ENTITY_ACTIVITY, ENS), "threshold"] == ENSEMBLE_THRESHOLD
    assert thresholds.loc[(ENTITY_ACTIVITY, Z), "model_version"] == 1
    assert thresholds.loc[(ENTITY_ACTIVITY, Z), "n_rows"] == 6


def test_top_anomalies_rank_by_ensemble_score_with_the_ensemble_reason_else_the_strongest_detectors(store):
    top = load(store).top_anomalies
    activities = top[top["entity_type"] == ENTITY_ACTIVITY]

    assert activities["entity_id"].tolist() == [4, 1, 2]
    assert activities["description"].tolist()[:2] == ["stronger forest sentence for 4", XSS]
    assert pd.isna(activities["description"].iloc[2])  # no record for activity 2
    assert load(store, top_n=1).top_anomalies["entity_id"].tolist() == [4, 101]


def test_a_window_keeps_only_entities_whose_time_is_inside_it(store):
    inputs = load(store, start=DAY + dt.timedelta(hours=11), end=DAY + dt.timedelta(hours=13))

    assert timeline_of(inputs, ENTITY_ACTIVITY) == [(hour(11), 2, 2, 1, 1)]
    assert agreement_of(inputs, ENTITY_ACTIVITY) == {"isolation_forest,zscore": (2, 1, 1), "dbscan": (1, 1, 0)}
    assert agreement_of(inputs, ENTITY_ORDER) == {}
    assert inputs.top_anomalies["entity_id"].tolist() == [4]
    assert inputs.score_summary.groupby("entity_type")["n_rows"].max().to_dict() == {
        ENTITY_ACTIVITY: 2,
        ENTITY_ORDER: 1,
    }


def test_a_missing_scores_table_raises_an_error_that_says_what_to_materialise(db_path):
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("CREATE SCHEMA detections; CREATE TABLE detections.activity_scores (activity_id BIGINT)")
        with pytest.raises(ReportInputsError, match=r"detections\.order_scores does not exist.*materialise"):
            load_report_inputs(conn)


def test_missing_optional_tables_are_listed_and_the_timeline_falls_back_to_scored_rows(db_path):
    build_store(db_path, optional_tables=False)

    inputs = load(db_path)

    assert set(inputs.missing) == {"timeline", "thresholds", "evaluation", "top_anomalies", "top_incidents"}
    assert timeline_of(inputs, ENTITY_ACTIVITY)[-1] == (hour(13), 1, 1, 0, 0)
    assert inputs.thresholds.set_index(["entity_type", "detector"])["threshold"].isna().sum() == 8
    html = render_anomaly_report(inputs, "Partial", GENERATED_AT)
    assert "detector_evaluation does not exist yet" in html
    assert "consolidated_anomalies does not exist yet" in html


def test_empty_scores_tables_give_a_report_that_says_there_is_nothing_to_show(db_path):
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("CREATE SCHEMA detections")
        for table, id_column, time_column in (
            ("activity_scores", "activity_id", "timestamp"),
            ("order_scores", "order_id", "created_at"),
        ):
            conn.execute(
                f"CREATE TABLE detections.{table} ({id_column} BIGINT, {time_column} TIMESTAMP, detector VARCHAR, "
                "score DOUBLE, is_anomaly BOOLEAN, model_version BIGINT)"
            )
    inputs = load(db_path)

    html = render_anomaly_report(inputs, "Empty", GENERATED_AT)

    assert inputs.timeline.empty and inputs.agreement.empty
    assert "No scored events in this window." in html
    assert "No scores in this window." in html
    assert "No detector flagged anything in this window." in html


# --- Rendering -----------------------------------------------------------------------------------


@pytest.fixture
def report_html(store) -> str:
    return render_anomaly_report(load(store), "Store <A> report", GENERATED_AT)


def test_the_report_has_every_section_with_a_heading_and_a_line_on_how_to_read_it(report_html):
    for anchor, heading in (
        ("summary", "Summary"),
        ("timeline", "Timeline"),
        ("scores", "Score distributions"),
        ("agreement", "Detector agreement"),
        ("evaluation", "Detector evaluation"),
        ("top-anomalies", "Top anomalies"),
    ):
        assert re.search(rf'<section id="{anchor}">\s*<h2>{heading}</h2>\s*<p class="how">', report_html), anchor
    assert report_html.count("Plotly.newPlot") == 3  # timeline, distributions, agreement
    assert "Generated 2026-01-02 06:00 UTC" in report_html


def test_the_report_shows_each_detectors_threshold_and_the_formatted_evaluation(report_html):
    assert "0.6123" in report_html and "11.57" in report_html
    assert "threshold 0.6123 (v1)" in report_html  # the distribution panel's subtitle
    # Ensemble on activities: flags 1 and 4, of which 1 is injected -> precision 0.500, recall 0.500.
    ensemble_row = re.search(r'<tr class="pooled"><td>ensemble</td><td>all kinds</td>.*?</tr>', report_html)
    assert ensemble_row and ensemble_row.group(0).count(">0.500<") >= 2


def test_text_from_data_is_escaped(report_html):
    assert "<script>alert(" not in report_html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in report_html
    assert "<title>Store &lt;A&gt; report</title>" in report_html


def test_the_report_is_self_contained_with_plotly_inlined_once_and_no_remote_source(report_html):
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)
    assert not remote.search(report_html)
    assert report_html.count(plotly.offline.get_plotlyjs()[:500]) == 1


# --- Writing -------------------------------------------------------------------------------------


def test_write_report_creates_the_folder_and_replaces_an_existing_report(tmp_path):
    path = tmp_path / "reports" / "nested" / "anomaly_report.html"

    write_report("<html>first</html>", path)
    written = write_report("<html>second ✓</html>", path)

    assert written == path.resolve()
    assert path.read_text(encoding="utf-8") == "<html>second ✓</html>"
    assert os.listdir(path.parent) == ["anomaly_report.html"]


def test_a_failed_write_keeps_the_previous_report_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "anomaly_report.html"
    write_report("<html>old</html>", path)

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report("<html>new</html>", path)

    assert path.read_text() == "<html>old</html>"
    assert sorted(os.listdir(tmp_path)) == ["anomaly_report.html"]


def test_rendering_does_not_change_the_inputs(store):
    inputs = load(store)
    before = {name: getattr(inputs, name).copy() for name in ("timeline", "score_sample", "agreement")}

    render_anomaly_report(inputs, "Report", GENERATED_AT)

    for name, frame in before.items():
        pd.testing.assert_frame_equal(getattr(inputs, name), frame)
    assert np.isfinite(inputs.score_sample["score"]).all()


def test_an_unlabelled_store_reads_not_evaluated_in_the_evaluation_section_never_a_zero_precision(db_path):
    build_store(db_path, labelled=False)

    html = render_anomaly_report(load(db_path), "Real store", GENERATED_AT)

    evaluation = html[html.index('<section id="evaluation">') :]
    evaluation = evaluation[: evaluation.index("</section>")]
    assert "Not evaluated: no labels for these days." in evaluation
    assert "0.000" not in evaluation


def incident_record(entity_id: int, at: dt.datetime, severity: str, score: float, ip: str) -> dict:
    details = {"rule": "failed_login_run", "facts": {"action_type": "failed_login"}, "top_features": [{"feature": "f"}]}
    return {
        "entity_type": ENTITY_ACTIVITY,
        "entity_id": entity_id,
        "detector_name": ENS,
        "severity": severity,
        "details": json.dumps(details),
        "anomaly_score": score,
        "event_timestamp": pd.Timestamp(at),
        "customer_id": None,
        "ip_address": ip,
        "session_id": None,
    }


def test_the_report_lists_top_incidents_most_severe_first_and_rows_only_while_none_were_grouped(store):
    without_incidents = render_anomaly_report(load(store), "r", GENERATED_AT)
    records = pd.DataFrame(
        [
            incident_record(1, DAY + dt.timedelta(hours=1), "Low", 4.0, "198.51.100.1"),
            incident_record(2, DAY + dt.timedelta(hours=5), "High", 1.5, XSS),
            incident_record(3, DAY + dt.timedelta(hours=5, minutes=2), "Low", 1.2, XSS),
        ]
    ).astype({"customer_id": "Int64"})
    with duckdb.connect(str(store)) as conn:
        replace_incidents(conn, group_incidents(records))

    inputs = load(store)
    report = render_anomaly_report(inputs, "r", GENERATED_AT)

    assert inputs.top_incidents["max_severity"].tolist() == ["High", "Low"]
    assert re.search(r'<section id="top-incidents">\s*<h2>Top incidents</h2>', report)
    assert "2 failed logins from &lt;script&gt;" in report and "<script>alert(" not in report
    assert report.index("sev-High") < report.index("1 failed login from 198.51.100.1")
    assert 'id="top-anomalies"' not in report
    assert 'id="top-anomalies"' in without_incidents and "does not exist yet" in without_incidents
    assert load(store, end=DAY + dt.timedelta(hours=2)).top_incidents["row_count"].tolist() == [1]
