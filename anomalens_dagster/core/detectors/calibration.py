"""How rare a detector's score is: an upper-tail probability learnt from its training scores.

Every detector scores on its own scale (max |z|, isolation depth, RMS distance, squared
reconstruction error). To combine them (core/scoring.py), each score becomes p = P(S >= score)
over the training rows: 0.5 is an ordinary row, 10^-6 a row far rarer than anything the training
days showed. `TailCalibration.fit` learns this at fit time, so scoring needs no training data and a
day scores the same alone or with others.

Two parts:
- the bulk, up to the training scores' `TAIL_START_QUANTILE` (98th percentile) u: the empirical
  survival function, interpolated between `BULK_GRID_POINTS` quantiles;
- the tail beyond u: an exponential, p(s) = p(u) exp(-(s - u) / beta), with beta matched to the
  quantiles `TAIL_FIT_FROM_QUANTILE` (90th) and `TAIL_START_QUANTILE`. Beyond the training data the
  probability keeps falling, so two extreme rows never tie at a floor.

Why the tail starts at the 98th percentile, not at the training maximum: a window holds anomalies
(the simulator injects 1.5-2 % of rows), and they sit in its top percentiles. An empirical tail
would say an attack that is 1 % of the window is never rarer than p = 0.01, however far out; the
exponential fitted below the top 2 % does not see them. That guard is also the limit: anomalies
that are more than about 2 % of a detector's training window set its tail and read as ordinary,
which is what the training exclusion (core/training.py) is for. Trimming instead to the rows a
detector does not flag itself (score <= threshold) was tried and rejected: about 1 % of normal
activities lie beyond DBSCAN's radius, and against its trimmed reference they read as rarer than
1e-5, so DBSCAN alone put 1.2 % of normal activities through the ensemble (seed 42, out of time).

Which scale the tail is exponential on is a property of what the score measures, declared by each
detector as `tail_power` (the calibration works on score ** tail_power). Distances get an
exponential tail in the distance itself: DBSCAN's RMS distance to the nearest core sample (power 1)
and the autoencoder's RMS reconstruction error, the square root of its mean squared error (power
0.5). Normal traffic has a heavy tail of rows far from every dense region (about 1 % of simulated
activities are DBSCAN noise): fitted on the squared distance, as a Gaussian tail would be, those
rows read as rarer than 1e-5 and DBSCAN alone flagged 0.85 % of normal activities through the
ensemble (held-out store of the quality-floor test); on the squared error the autoencoder called 0.1 %
of normal activities rarer than 1e-4. max |z| over log-scaled features is the one score with a
Gaussian-like tail, so its tail is exponential in z^2 (power 2): on z itself a z of 10 read as only
1 in 200. The isolation forest's score is a depth on its own scale (power 1).

Degenerate training scores (most rows at one value, e.g. distance 0 to a core sample) fall back to
the spread between u and the largest training score, then to a tiny scale: a training window that
never varied above u makes anything above it very rare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TAIL_START_QUANTILE = 0.98
TAIL_FIT_FROM_QUANTILE = 0.90
BULK_GRID_POINTS = 99
# Scale used when the reference has no spread above u, relative to max(1, |u|).
DEGENERATE_SCALE = 1e-9


@dataclass(frozen=True)
class TailCalibration:
    """ln P(S >= s) among a detector's normal training rows; see the module docstring."""

    grid_scores: np.ndarray  # increasing bulk scores (on the powered scale), ending at tail_start
    grid_log_p: np.ndarray  # ln survival at each, non-increasing, ending at tail_log_p
    tail_start: float
    tail_log_p: float
    tail_scale: float
    n_reference: int
    power: float = 1.0

    @classmethod
    def fit(cls, training_scores: np.ndarray, power: float = 1.0) -> TailCalibration:
        """Learn the calibration of scores >= 0 on the scale score ** `power` (see the module docstring)."""
        if not power > 0:
            raise ValueError(f"tail calibration power must be positive, got {power}")
        scores = _powered(training_scores, power)
        if scores.size == 0 or not np.isfinite(scores).all():
            raise ValueError("tail calibration needs finite training scores (at least one)")
        probabilities = np.linspace(0.0, TAIL_START_QUANTILE, BULK_GRID_POINTS)
        quantiles = np.quantile(scores, probabilities)
        # A run of equal quantiles is one score; P(S >= it) is the survival where the run starts.
        grid_scores, first = np.unique(quantiles, return_index=True)
        grid_log_p = np.log1p(-probabilities[first])
        tail_start = float(grid_scores[-1])
        tail_log_p = float(grid_log_p[-1])
        fit_from = float(np.quantile(scores, TAIL_FIT_FROM_QUANTILE))
        scale = (tail_start - fit_from) / math.log((1 - TAIL_FIT_FROM_QUANTILE) / (1 - TAIL_START_QUANTILE))
        if not scale > 0:
            above = scores.size * (1 - TAIL_START_QUANTILE)
            scale = (float(scores.max()) - tail_start) / math.log(max(above, math.e))
        if not scale > 0:
            scale = DEGENERATE_SCALE * max(1.0, abs(tail_start))
        return cls(grid_scores, grid_log_p, tail_start, tail_log_p, float(scale), int(scores.size), float(power))

    def log_p(self, scores: np.ndarray) -> np.ndarray:
        """Natural log of the upper-tail probability of each score (0 for the lowest, unbounded below)."""
        scores = _powered(scores, self.power)
        bulk = np.interp(scores, self.grid_scores, self.grid_log_p)
        tail = self.tail_log_p - (scores - self.tail_start) / self.tail_scale
        return np.where(scores > self.tail_start, tail, bulk)

    def summary(self) -> dict[str, float]:
        """JSON-ready figures for the training metrics."""
        return {
            "tail_start": self.tail_start,
            "tail_scale": self.tail_scale,
            "tail_reference_rows": self.n_reference,
            "tail_power": self.power,
        }


def _powered(scores: np.ndarray, power: float) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    # A signed power keeps the order of any score, though every detector's is >= 0.
    return scores if power == 1.0 else np.sign(scores) * np.abs(scores) ** power
