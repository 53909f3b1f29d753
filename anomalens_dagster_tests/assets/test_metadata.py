"""The shared metadata helpers: numbers rounded to what a person reads."""

import math

import dagster as dg
import numpy as np

from anomalens_dagster.assets.metadata import readable_metadata, readable_number


def test_a_float_is_rounded_to_four_significant_digits_whatever_its_magnitude():
    assert readable_number(0.019857142857142858) == 0.01986
    assert readable_number(0.2915519558484419) == 0.2916
    assert readable_number(28.746758385463803) == 28.75
    assert readable_number(1.4901161193847656e-08) == 1.49e-08
    assert readable_number(123456.789) == 123500.0


def test_ints_bools_and_non_finite_floats_are_left_as_they_are():
    assert readable_number(70000) == 70000 and isinstance(readable_number(70000), int)
    assert readable_number(True) is True
    assert math.isnan(readable_number(float("nan")))
    assert readable_number(float("inf")) == float("inf")


def test_readable_metadata_rounds_plain_numpy_and_metadata_value_floats_and_keeps_the_rest():
    metadata = readable_metadata(
        {
            "rate": 0.018714285714285715,
            "numpy_rate": np.float64(0.6394933884599141),
            "plotted": dg.MetadataValue.float(0.9729729729),
            "rows": 7000,
            "name": "activity_zscore",
        }
    )

    assert metadata["rate"] == 0.01871
    assert metadata["numpy_rate"] == 0.6395 and type(metadata["numpy_rate"]) is float
    assert metadata["plotted"] == dg.MetadataValue.float(0.973)
    assert metadata["rows"] == 7000 and isinstance(metadata["rows"], int)
    assert metadata["name"] == "activity_zscore"
