"""Forget a customer: anonymise their personal data in the store and the anomaly tables, in one
transaction, and record that it was done in `ops.forgotten_customers`.

What is personal data here: the customer's email and names (store.customers), the IP addresses
and user agents of their activities, their email where a login attempt named it
(``details.attempted_email`` of anonymous failed logins), and those values where the anomaly
records and incidents repeat them (columns, descriptions, JSON details, session actions, an
incident's IP list and summary; emails are masked there, and a masked form another customer
shares, like ``jo***@example.com``, is replaced on their records too: erring towards forgetting),
their IPs and email in analysts' allow rules and notes (``ops.analyst_feedback``: the verdicts
stay, an allow rule on their IP then allows nothing), and in the payloads of the alert outbox
(``ops.alerts``). Nothing outside the DuckDB file is touched: an alert already delivered stays with
its receiver.

The rows themselves stay: orders, activities and anomaly records keep their ids, times, amounts and
actions, so features, models and the evaluation of past days are unchanged. The customer row keeps
its id with a placeholder email (the column is NOT NULL). An IP address of the customer is cleared
wherever it appears, anonymous activities from it included: it identifies the person, whoever's row
it is on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import duckdb

from anomalens_dagster.constants import (
    ALERTS,
    ALLOW_IP,
    ANALYST_FEEDBACK,
    ANOMALIES,
    CONSOLIDATED_ANOMALIES,
    CUSTOMERS,
    DETECTIONS_SCHEMA,
    INCIDENTS,
    OPS_SCHEMA,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.anomalies import mask_email
from anomalens_dagster.core.warehouse import table_exists, transaction

logger = logging.getLogger(__name__)

FORGOTTEN_CUSTOMERS = "forgotten_customers"  # table in OPS_SCHEMA
FORGOTTEN_TEXT = "[forgotten]"


class UnknownCustomerError(LookupError):
    """The store has no customer with that id."""


def forgotten_email(customer_id: int) -> str:
    """The placeholder that replaces a forgotten customer's email (unique, never deliverable)."""
    return f"forgotten-{customer_id}@invalid"


def forget_customer(conn: duckdb.DuckDBPyConnection, customer_id: int, at: dt.datetime) -> dict[str, int]:
    """Anonymise customer `customer_id` everywhere (see the module docstring) in one transaction.

    Returns the rows changed per table (as recorded in `ops.forgotten_customers` with `at`). Raises
    `UnknownCustomerError` when the store holds no such customer; forgetting twice changes nothing
    the second time but is recorded again.
    """
    customers = f"{STORE_SCHEMA}.{CUSTOMERS}"
    if not table_exists(conn, CUSTOMERS, STORE_SCHEMA):
        raise UnknownCustomerError(f"the store holds no customers table, so no customer {customer_id}")
    found = conn.execute(f"SELECT email FROM {customers} WHERE id = $id", {"id": customer_id}).fetchone()
    if found is None:
        raise UnknownCustomerError(f"the store holds no customer {customer_id}")
    (email,) = found
    changed: dict[str, int] = {}
    with transaction(conn):
        secrets = _personal_strings(conn, customer_id, email)
        changed[f"{STORE_SCHEMA}.{CUSTOMERS}"] = _count(
            conn.execute(
                f"UPDATE {customers} SET email = $placeholder, first_name = NULL, last_name = NULL WHERE id = $id",
                {"id": customer_id, "placeholder": forgotten_email(customer_id)},
            )
        )
        changed[f"{STORE_SCHEMA}.{USER_ACTIVITIES}"] = _forget_activities(conn, customer_id, email, secrets["ips"])
        for table in (ANOMALIES, CONSOLIDATED_ANOMALIES, INCIDENTS):
            if table_exists(conn, table, DETECTIONS_SCHEMA):
                changed[f"{DETECTIONS_SCHEMA}.{table}"] = _forget_in_records(conn, table, customer_id, secrets)
        if table_exists(conn, ANALYST_FEEDBACK, OPS_SCHEMA):
            changed[f"{OPS_SCHEMA}.{ANALYST_FEEDBACK}"] = _forget_in_feedback(conn, secrets)
        if table_exists(conn, ALERTS, OPS_SCHEMA):
            changed[f"{OPS_SCHEMA}.{ALERTS}"] = _forget_in_alert_payloads(conn, secrets["texts"])
        _record(conn, customer_id, at, changed)
    logger.info("forgot customer %d: %s", customer_id, changed)
    return changed


def _personal_strings(conn: duckdb.DuckDBPyConnection, customer_id: int, email: str) -> dict[str, list[str]]:
    """The customer's IPs, and the texts (IPs, email, masked email) that anomaly records may repeat."""
    ips = [
        ip
        for (ip,) in conn.execute(
            f"""SELECT DISTINCT ip_address FROM {STORE_SCHEMA}.{USER_ACTIVITIES}
                WHERE customer_id = $id AND ip_address IS NOT NULL""",
            {"id": customer_id},
        ).fetchall()
    ]
    return {"ips": ips, "texts": [*ips, email, mask_email(email)]}


def _forget_activities(conn: duckdb.DuckDBPyConnection, customer_id: int, email: str, ips: list[str]) -> int:
    ((changed,),) = conn.execute(
        f"""UPDATE {STORE_SCHEMA}.{USER_ACTIVITIES}
            SET ip_address = CASE WHEN ip_address IN (SELECT unnest($ips)) THEN NULL ELSE ip_address END,
                user_agent = CASE WHEN customer_id = $id THEN NULL ELSE user_agent END,
                details = CASE WHEN json_extract_string(details, '$.attempted_email') = $email
                               THEN json_merge_patch(details, '{{"attempted_email": null}}') ELSE details END
            WHERE customer_id = $id OR ip_address IN (SELECT unnest($ips))
               OR json_extract_string(details, '$.attempted_email') = $email""",
        {"id": customer_id, "ips": ips, "email": email},
    ).fetchall()
    return int(changed)


def _forget_in_records(
    conn: duckdb.DuckDBPyConnection, table: str, customer_id: int, secrets: dict[str, list[str]]
) -> int:
    """Clear the customer's IPs in `table`'s columns and replace their IPs and email in its texts."""
    columns = {
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = $schema AND table_name = $table",
            {"schema": DETECTIONS_SCHEMA, "table": table},
        ).fetchall()
    }
    text_columns = [name for name in ("description", "details", "session_actions", "summary") if name in columns]
    assignments, matches = [], []
    if "ip_address" in columns:
        assignments.append("ip_address = CASE WHEN ip_address IN (SELECT unnest($ips)) THEN NULL ELSE ip_address END")
        matches.append("ip_address IN (SELECT unnest($ips))")
    if "ip_addresses" in columns:  # an incident's list of IPs
        assignments.append("ip_addresses = list_filter(ip_addresses, lambda ip: NOT list_contains($ips, ip))")
        matches.append("len(list_intersect(ip_addresses, $ips)) > 0")
    for column in text_columns:
        replaced = f"CAST({column} AS VARCHAR)"
        for position in range(len(secrets["texts"])):
            replaced = f"replace({replaced}, $text_{position}, $forgotten)"
        assignments.append(f"{column} = {replaced}")
        matches.extend(f"contains(CAST({column} AS VARCHAR), $text_{p})" for p in range(len(secrets["texts"])))
    if not matches:
        return 0
    params = {
        "ips": secrets["ips"],
        "forgotten": FORGOTTEN_TEXT,
        **{f"text_{position}": text for position, text in enumerate(secrets["texts"])},
    }
    ((changed,),) = conn.execute(
        f"UPDATE {DETECTIONS_SCHEMA}.{table} SET {', '.join(assignments)} WHERE {' OR '.join(matches)}", params
    ).fetchall()
    return int(changed)


def _forget_in_feedback(conn: duckdb.DuckDBPyConnection, secrets: dict[str, list[str]]) -> int:
    """Replace the customer's IPs in allow rules (the rule then allows nothing) and their IPs and email
    in analysts' notes. The verdicts stay: append-only yields to a deletion request here only."""
    note = "note"
    for position in range(len(secrets["texts"])):
        note = f"replace({note}, $text_{position}, $forgotten)"
    in_note = " OR ".join(f"contains(note, $text_{p})" for p in range(len(secrets["texts"])))
    ((changed,),) = conn.execute(
        f"""UPDATE {OPS_SCHEMA}.{ANALYST_FEEDBACK}
            SET allow_value = CASE WHEN allow_kind = $ip AND allow_value IN (SELECT unnest($ips))
                                   THEN $forgotten ELSE allow_value END,
                note = {note}
            WHERE (allow_kind = $ip AND allow_value IN (SELECT unnest($ips))) OR {in_note}""",
        {
            "ip": ALLOW_IP,
            "ips": secrets["ips"],
            "forgotten": FORGOTTEN_TEXT,
            **{f"text_{position}": text for position, text in enumerate(secrets["texts"])},
        },
    ).fetchall()
    return int(changed)


def _forget_in_alert_payloads(conn: duckdb.DuckDBPyConnection, texts: list[str]) -> int:
    """Replace the customer's IPs and (masked) email in the alert outbox's payloads."""
    changed = 0
    for text in texts:
        ((rows,),) = conn.execute(
            f"""UPDATE {OPS_SCHEMA}.{ALERTS} SET payload = replace(CAST(payload AS VARCHAR), $text, $forgotten)
                WHERE contains(CAST(payload AS VARCHAR), $text)""",
            {"text": text, "forgotten": FORGOTTEN_TEXT},
        ).fetchall()
        changed += int(rows)
    return changed


def _record(conn: duckdb.DuckDBPyConnection, customer_id: int, at: dt.datetime, changed: dict[str, int]) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {OPS_SCHEMA}")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {OPS_SCHEMA}.{FORGOTTEN_CUSTOMERS} (
                customer_id BIGINT NOT NULL, forgotten_at TIMESTAMP NOT NULL, rows_changed JSON NOT NULL)"""
    )
    conn.execute(
        f"INSERT INTO {OPS_SCHEMA}.{FORGOTTEN_CUSTOMERS} VALUES ($id, $at, $changed)",
        {"id": customer_id, "at": at, "changed": json.dumps(changed)},
    )


def _count(result: duckdb.DuckDBPyConnection) -> int:
    ((changed,),) = result.fetchall()
    return int(changed)
