"""Deterministic online-store simulator with labelled injected anomalies.

Two pure functions make the store's data (one module per concern: ``catalogue``, ``orders``,
``traffic`` for normal sessions, ``injected`` for injected anomalies, ``day`` places a day's
sessions in time and ``frames`` assembles its tables and labels):

- :func:`simulate_catalog` builds categories, products and customers, plus the pools the traffic
  draws from (each customer's usual IPs and user agents, anonymous visitors' IPs, attackers' IPs,
  search queries, page URLs). It depends only on ``seed`` and the three catalog sizes, and it is the
  only place Faker runs.
- :func:`simulate_day` builds one day of orders, order items and user activities, and the
  ``simulation_labels`` that name every injected anomalous row. It is a function of
  (settings, day) alone: its generator is seeded from ``(seed, day ordinal)``, so a day rebuilt later
  is identical, row ids included; ids and session numbers follow time. Everything is vectorised
  with numpy; Python loops run over a few rejection rounds or anomaly kinds, never over rows.

Money is in currency units with cent precision (prices like ``38.99``): a normal order's total is
exactly the sum of its items' ``price * quantity`` rounded to cents.

Normal traffic (rules the detectors are measured against):

- Sessions group the consecutive actions of one visitor: one session id, one IP, one user agent,
  actions 3 s to 3 min apart. A session starts at a time drawn from a daily cycle (quiet at night,
  peaks around noon and 19-21 h) and ends before midnight.
- Every order is the last action of its customer's session: optionally a login, some browsing,
  then ``add_to_cart`` for each order line (sometimes each preceded by ``view_product``), then one
  ``purchase`` at the order's ``created_at`` carrying its total and id.
- Browsing sessions belong to a customer (from one of their 1-3 usual IPs and user agents) or to an
  anonymous visitor (customer_id NA, IP from the anonymous pool). A customer runs one session at a
  time, at least a minute after the previous one ends. Customers sometimes log in at the start,
  log out at the end, or update their profile. A login is rarely preceded by one mistyped
  password: one ``failed_login`` (anonymous, since nobody is authenticated yet) with the
  customer's email, then the successful ``login``. Normal traffic never contains a run of failed
  logins nor identical actions seconds apart.
- A day holds ``activities_per_day`` activities in total, injected ones included: browsing fills
  what orders and injected anomalies leave. Only if the orders alone need more actions than that
  (each order needs ``lines + 1``) is the total exceeded, with a warning.

Injected anomalies (each row listed in ``simulation_labels`` with its kind and an episode id
``"<date>:<kind>:<n>"`` unique across days; start times follow the daily cycle):

- ``order_high_total`` / ``order_low_total``: ``order_anomaly_rate`` of the day's orders
  (stochastically rounded) get an abnormal total, 70 % ``items' cost * U(10, 100)`` and 30 %
  ``U(0.1, 10)``; their items are unchanged. The purchase activity carries the same total; the order
  and its purchase activity are labelled with one episode.
- ``activity_burst``: 5-15 identical actions (one of view_product / add_to_cart / search with one
  product or query) in a session of their own, from one IP and user agent, 0.2-3 s apart, by a
  customer from one of their usual IPs or by an anonymous client from an attacker IP.
- ``failed_login_run``: 5-20 anonymous ``failed_login`` for one attempted email (80 % an existing
  customer's, 20 % made up) from one IP (80 % an attacker IP, otherwise one of the victim's usual
  IPs), 1-6 s apart.

For both activity kinds, episode sizes are drawn until their rows reach the rate times
``activities_per_day``; the last episode is kept with the probability that makes the expected row
count equal to that target. Rates of 0 inject nothing.
"""

from anomalens_dagster.core.simulator.catalogue import Catalog, TrafficPools, simulate_catalog
from anomalens_dagster.core.simulator.day import SIMULATION_BATCH_ACTIVITIES, simulate_day, simulate_days
from anomalens_dagster.core.simulator.frames import SimulatedDay, day_id_base
from anomalens_dagster.core.simulator.pricing import MAX_TOTAL_TO_ITEMS, MIN_TOTAL_TO_ITEMS, SHIPPING_FEE
from anomalens_dagster.core.simulator.settings import SimulationSettings, UnknownAnomalyKindError, check_anomaly_kinds
from anomalens_dagster.core.simulator.vocabulary import DETAIL_COLUMNS, DETAIL_KEYS, DETAIL_KEYS_BY_ACTION

__all__ = [
    "DETAIL_COLUMNS",
    "DETAIL_KEYS",
    "DETAIL_KEYS_BY_ACTION",
    "MAX_TOTAL_TO_ITEMS",
    "MIN_TOTAL_TO_ITEMS",
    "SHIPPING_FEE",
    "SIMULATION_BATCH_ACTIVITIES",
    "Catalog",
    "SimulatedDay",
    "SimulationSettings",
    "TrafficPools",
    "UnknownAnomalyKindError",
    "check_anomaly_kinds",
    "day_id_base",
    "simulate_catalog",
    "simulate_day",
    "simulate_days",
]
