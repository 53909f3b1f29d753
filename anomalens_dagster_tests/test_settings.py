"""The settings file reaches every run: pure merging, and asset runs with and without run config."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.assets.store import store_catalog
from anomalens_dagster.configs import DetectionConfig, ModelConfig, SettingsFileError, SimulationConfig
from anomalens_dagster.constants import ENSEMBLE_THRESHOLD
from anomalens_dagster.settings import SettingsFile, with_settings, write_setting


def test_a_field_the_run_config_did_not_set_takes_the_files_value():
    config = SimulationConfig(seed=5)

    resolved = with_settings(config, {"seed": 1, "num_products": 17})

    assert (resolved.seed, resolved.num_products) == (5, 17)
    assert resolved.num_customers == SimulationConfig().num_customers


def test_nested_sections_fill_a_models_training_and_detection_fields():
    config = ModelConfig(training={"training_days": 7})

    resolved = with_settings(config, {"training": {"training_days": 3, "seed": 9}, "detection": {"z_threshold": 4.5}})

    assert (resolved.training.training_days, resolved.training.seed) == (7, 9)
    assert resolved.detection.z_threshold == 4.5


def test_a_missing_settings_file_means_the_defaults(tmp_path):
    settings = SettingsFile(path=str(tmp_path / "absent.yaml"))

    assert settings.resolve(SimulationConfig(), "simulation") == SimulationConfig()


def test_a_settings_file_with_a_typo_fails_naming_the_key(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("detection:\n  z_treshold: 4\n")

    with pytest.raises(SettingsFileError, match="unknown key 'z_treshold' in section 'detection'"):
        SettingsFile(path=str(path)).sections()


def categories(db_path) -> int:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM store.categories").fetchone()[0]


def test_a_run_without_run_config_uses_the_settings_file_and_run_config_overrides_it(
    tmp_path, duckdb_resource, db_path
):
    path = tmp_path / "settings.yaml"
    path.write_text("simulation:\n  num_categories: 3\n  num_products: 20\n  num_customers: 30\n")
    resources = {"duckdb": duckdb_resource, "settings": SettingsFile(path=str(path))}

    dg.materialize([store_catalog], resources=resources)  # as automation and schedules start runs
    from_file = categories(db_path)
    dg.materialize(
        [store_catalog], resources=resources, run_config={"ops": {"store_catalog": {"config": {"num_categories": 5}}}}
    )

    assert (from_file, categories(db_path)) == (3, 5)


def test_calibrated_thresholds_in_the_settings_name_known_entities_and_detectors_and_are_written_whole(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("training:\n  training_days: 14\n")

    write_setting(path, "detection", "thresholds", {"order": {"zscore": 6.5, "ensemble": 0.9}})
    detection = SettingsFile(path=str(path)).resolve(DetectionConfig(), "detection")

    assert detection.threshold_override("zscore", "order") == 6.5
    assert detection.threshold_override("dbscan", "order") is None
    assert (detection.ensemble_threshold("order"), detection.ensemble_threshold("activity")) == (
        0.9,
        ENSEMBLE_THRESHOLD,
    )
    assert SettingsFile(path=str(path)).sections()["training"] == {"training_days": 14}
    for bad, named in (({"orders": {"zscore": 1.0}}, "orders"), ({"order": {"lof": 1.0}}, "lof")):
        with pytest.raises(SettingsFileError, match=named):
            write_setting(path, "detection", "thresholds", bad)
    assert "lof" not in path.read_text()  # a refused value leaves the file as it was
