"""The simulator's vocabulary: detail keys per action, action and anomaly-kind codes, time units."""

from __future__ import annotations

from anomalens_dagster import constants

# Keys of the `details` JSON; the frame holds each as the column "details_<key>".
DETAIL_KEYS = (
    "product_id",
    "product_name",
    "quantity",
    "query",
    "url",
    "success",
    "order_total",
    "attempted_email",
    "order_id",
)
DETAIL_COLUMNS = tuple(f"details_{key}" for key in DETAIL_KEYS)
DETAIL_KEYS_BY_ACTION: dict[str, tuple[str, ...]] = {
    "view_page": ("url",),
    "view_product": ("product_id", "product_name", "url"),
    "search": ("query", "url"),
    "add_to_cart": ("product_id", "product_name", "quantity"),
    "remove_from_cart": ("product_id", "product_name", "quantity"),
    "login": ("success",),
    "failed_login": ("success", "attempted_email"),
    "logout": (),
    "purchase": ("order_total", "order_id"),
    "update_profile": ("url",),
}

US_PER_S = 1_000_000
DAY_US = 86_400 * US_PER_S

ACTION_CODE = {name: code for code, name in enumerate(constants.ACTION_TYPES)}
VIEW_PAGE = ACTION_CODE["view_page"]
VIEW_PRODUCT = ACTION_CODE["view_product"]
SEARCH = ACTION_CODE["search"]
ADD_TO_CART = ACTION_CODE["add_to_cart"]
REMOVE_FROM_CART = ACTION_CODE["remove_from_cart"]
LOGIN = ACTION_CODE["login"]
FAILED_LOGIN = ACTION_CODE["failed_login"]
LOGOUT = ACTION_CODE["logout"]
PURCHASE = ACTION_CODE["purchase"]
UPDATE_PROFILE = ACTION_CODE["update_profile"]

# Injected kinds are numbered by their position in constants.ANOMALY_KINDS.
KIND_CODE = {kind: code for code, kind in enumerate(constants.ANOMALY_KINDS)}
