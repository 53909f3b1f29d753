"""`anomalens run` keeps the last days of a simulated store out of training, unless the settings choose."""

from anomalens_dagster.cli.pipeline import _with_demo_holdout
from anomalens_dagster.constants import DEMO_HOLDOUT_DAYS


def test_a_simulated_run_holds_out_its_last_days_and_always_keeps_one_to_train_on():
    assert _with_demo_holdout({"simulation": {"seed": 3}}, days=7) == {
        "simulation": {"seed": 3},
        "training": {"holdout_days": DEMO_HOLDOUT_DAYS},
    }
    assert _with_demo_holdout({}, days=2)["training"]["holdout_days"] == 1
    assert _with_demo_holdout({"training": {"training_days": 5}}, days=1)["training"] == {
        "training_days": 5,
        "holdout_days": 0,
    }


def test_the_settings_own_holdout_is_kept(tmp_path, monkeypatch):
    chosen = {"training": {"holdout_days": 0}}
    assert _with_demo_holdout(chosen, days=7) is chosen

    deployment = tmp_path / "settings.yaml"
    deployment.write_text("training:\n  holdout_days: 3\n")
    monkeypatch.setenv("ANOMALENS_SETTINGS", str(deployment))
    assert _with_demo_holdout({}, days=7) == {}
