"""Deterministic online-store simulator with labelled injected anomalies.

Two pure functions make the store's data, one module per concern: ``catalogue`` (tables and the
pools traffic draws from), ``profiles`` (customers' habits), ``pricing`` (what an order charges),
``orders``, ``traffic`` (normal sessions), ``injected`` and ``injected_orders`` (injected anomalies),
``day`` (a day's parts placed in time) and ``frames`` (its tables and labels).

- :func:`simulate_catalog` builds categories, products and customers, plus the pools the traffic
  draws from (each customer's usual IPs and user agents, offices' and mobile carriers' shared IPs,
  anonymous visitors' IPs, attackers' IPs, search queries, page URLs, customers' habits). It
  depends only on ``seed`` and the three catalog sizes, and it is the only place Faker runs.
- :func:`simulate_day` builds one day of orders, order items and user activities, and the
  ``simulation_labels`` that name every injected anomalous row. It is a function of
  (settings, day) alone: its generators are seeded from ``(seed, day ordinal)``, one per part (each
  injected kind its own, so leaving a kind out leaves the other kinds' episodes as they were), so a
  day rebuilt later is identical, row ids included; ids and session numbers follow time. Everything
  is vectorised with numpy; Python loops run over a few rejection rounds or anomaly kinds, never
  over rows.

Money is in currency units with cent precision (prices like ``38.99``). A normal order charges its
items less an occasional discount, plus the customer's sales tax and shipping below a threshold
(``pricing``), within documented bounds of the items' cost.

Normal traffic (rules the detectors are measured against):

- Sessions group the consecutive actions of one visitor: one session id, one IP, one user agent,
  actions 3 s to 3 min apart (a power shopper's fast sessions 1-20 s). A session starts at a time
  drawn from a daily cycle (quiet at night, peaks around noon and 19-21 h; night owls' own cycle
  peaks around midnight) and ends before midnight.
- Every order is the last action of its customer's session: optionally a login, some browsing,
  then ``add_to_cart`` for each order line (sometimes each preceded by ``view_product``), then one
  ``purchase`` at the order's ``created_at`` carrying its total and id. Business customers' baskets
  are consistently large.
- Browsing sessions belong to a customer (from one of their 1-3 usual IPs, an office worker's
  last one shared with colleagues, or, on a phone, a mobile carrier's shared IP) or to an anonymous
  visitor (customer_id NA, IP from the anonymous pool or a carrier's). A customer runs one session
  at a time, at least a minute after the previous one ends. Customers sometimes log in at the start,
  log out at the end, or update their profile. A login is rarely preceded by one mistyped
  password: one ``failed_login`` (anonymous, since nobody is authenticated yet) with the
  customer's email, then the successful ``login``; some short sessions are only one or two such
  failed logins (the customer gave up). Normal traffic never contains a run of failed logins nor
  identical actions seconds apart. Rates of every habit: ``profiles`` and ``traffic``.
- A day holds ``activities_per_day`` activities in total, injected ones included: browsing fills
  what orders and injected anomalies leave. Only if the orders alone need more actions than that
  (each order needs ``lines + 1``) is the total exceeded, with a warning.

Injected anomalies (``settings.anomaly_kinds`` picks them; each row listed in ``simulation_labels``
with its kind and an episode id ``"<date>:<kind>:<n>"`` unique across days, numbered per kind in
order of the episodes' first rows; start times follow the daily cycle):

- ``order_high_total`` / ``order_low_total``: ``order_anomaly_rate`` of the day's orders
  (stochastically rounded) get an abnormal total, 70 % ``items' cost * U(10, 100)`` and 30 %
  ``U(0.1, 10)``; their items are unchanged. The purchase activity carries the same total; the order
  and its purchase activity are labelled with one episode.
- ``quantity_hoarding``: ``quantity_hoarding_rate`` of the orders take 20-100 units of one product;
  the order, that line's add_to_cart and the purchase form the episode.
- ``activity_burst``: 5-15 identical actions (one of view_product / add_to_cart / search with one
  product or query) in a session of their own, from one IP and user agent, 0.2-3 s apart, by a
  customer from one of their usual IPs or by an anonymous client from an attacker IP.
- ``failed_login_run``: 5-20 anonymous ``failed_login`` for one attempted email (80 % an existing
  customer's, 20 % made up) from one IP (80 % an attacker IP, otherwise one of the victim's usual
  IPs), 1-6 s apart.
- ``scraping`` and ``credential_stuffing`` (``injected``), ``account_takeover`` and ``card_testing``
  (``injected_orders``, whose orders are charged like any other): see those modules.

For the activity kinds, episode sizes are drawn until their rows reach the rate times
``activities_per_day`` (the last episode kept with the probability that makes the expected row
count equal to that target; takeovers and card testing draw an episode count of that expectation).
Rates of 0 inject nothing.
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
