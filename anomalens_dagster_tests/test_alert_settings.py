"""The settings file's `alerts` section: targets named by their settings, secrets by environment variable names."""

from __future__ import annotations

import pytest

from anomalens_dagster.configs import AlertsConfig, SettingsFileError
from anomalens_dagster.settings import read_settings_file


def test_an_alerts_section_with_every_target_reads_with_the_documented_defaults(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text(
        "alerts:\n"
        "  webhook: {url: 'https://hooks.example.com/anomalens', token_env: ANOMALENS_WEBHOOK_TOKEN}\n"
        "  slack: {channel: '#fraud'}\n"
        "  email: {host: smtp.example.com, sender: a@example.com, recipients: [b@example.com]}\n"
    )
    alerts = AlertsConfig(**read_settings_file(path)["alerts"])
    assert alerts.min_severity == "High" and alerts.stale_after_hours == 26
    assert (alerts.retry_initial_seconds, alerts.retry_max_seconds) == (30, 3600)
    assert alerts.slack.token_env == "ANOMALENS_SLACK_TOKEN" and alerts.slack.api_url == "https://slack.com/api/"
    assert alerts.email.port == 587 and alerts.email.starttls


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("{slack: {channel: '#x', token: xoxb-123}}", "token"),
        ("{webhook: {url: 'http://x', tokn_env: T}}", "tokn_env"),
        ("{min_severity: Critical}", "Critical"),
        ("{retry_initial_seconds: 600, retry_max_seconds: 60}", "retry_initial_seconds"),
    ],
)
def test_a_wrong_alerts_setting_fails_naming_it_and_a_secret_has_no_key_to_go_in(tmp_path, section, named):
    path = tmp_path / "settings.yaml"
    path.write_text(f"alerts: {section}\n")
    with pytest.raises(SettingsFileError, match=named) as raised:
        read_settings_file(path)
    assert "xoxb-123" not in str(raised.value)  # a secret pasted by mistake is not echoed


@pytest.mark.parametrize("webhook", ["{token_env: T}", "{url: 'http://x', url_env: U}"])
def test_a_webhook_needs_exactly_one_of_url_and_url_env(tmp_path, webhook):
    path = tmp_path / "settings.yaml"
    path.write_text(f"alerts: {{webhook: {webhook}}}\n")
    with pytest.raises(SettingsFileError, match="either url or url_env"):
        read_settings_file(path)
