"""Autoencoder detector (Keras 3 on TensorFlow): rows the network cannot reconstruct are anomalous.

`import tensorflow` costs 2.5-8 s, so Keras is imported only inside `fit`: the trained network's
forward pass is a few dense layers, which scoring runs in numpy from the fitted weights. Importing
this module, loading a registered autoencoder and scoring with it never load TensorFlow, so a
scoring run started by the daemon does not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    DEFAULT_AUTOENCODER_BATCH_SIZE,
    DEFAULT_AUTOENCODER_EPOCHS,
    DEFAULT_AUTOENCODER_PATIENCE,
    DEFAULT_AUTOENCODER_THRESHOLD_QUANTILE,
    DEFAULT_AUTOENCODER_VALIDATION_FRACTION,
    DEFAULT_SEED,
    DETECTOR_AUTOENCODER,
)
from anomalens_dagster.core.detectors.base import Detector
from anomalens_dagster.core.detectors.preprocessing import TabularPreprocessor

if TYPE_CHECKING:
    import keras

EpochCallback = Callable[[int, Mapping[str, float]], None]

# The forward pass runs in batches of this many rows to bound memory.
FORWARD_BATCH_SIZE = 16_384
# Training batches run this many at a time inside one TensorFlow call: the same updates in the same
# order (identical weights, measured), without a Python round trip per batch (5 epochs on 180k rows:
# 3.6 s one at a time, 2.3 s by 32).
TRAIN_STEPS_PER_EXECUTION = 32


class AutoencoderDetector(Detector):
    """Dense autoencoder over the preprocessed features; score = mean squared reconstruction error.

    Architecture: width → `hidden_units` (relu) → `encoding_dim` (linear) → `hidden_units` (relu) →
    width (linear), width being the number of preprocessed columns; by default `encoding_dim` =
    max(2, width // 3) and `hidden_units` = max(16, 2 × encoding_dim). Trained with Adam on MSE for
    at most `epochs`, stopping early when the validation loss (a seeded `validation_fraction` of the
    rows) has not improved for `patience` epochs, keeping the best weights.

    Determinism without touching global random state: every layer's initializer has its own seed
    derived from `random_state`, the rows are shuffled once with `np.random.default_rng`, and Keras
    is told not to shuffle — the same data and seed give the same weights and identical scores.

    `threshold_` = the `threshold_quantile` quantile of the training reconstruction errors.
    `explain` contributions are each feature's squared reconstruction error divided by the width (a
    categorical feature sums its one-hot columns), so a row's contributions add up to its score.
    `on_epoch_end(epoch, logs)` is called after every epoch with Keras' 0-based epoch and the losses
    as floats (e.g. to log progress); it is a runtime
    hook, not model state, and is not pickled.
    Fitted: `preprocessor_`; `layers_`, each layer's (kernel, bias, activation) as float32 numpy
    arrays, which the forward pass of training's threshold and of scoring uses alike; `keras_bytes_`,
    the trained Keras model as `.keras` bytes (`keras_model()` loads it, for inspection).
    """

    name = DETECTOR_AUTOENCODER
    tail_power = 0.5  # a mean squared error: its tail is fitted on the RMS error (calibration.py)

    def __init__(
        self,
        numeric_features: Sequence[str],
        categorical_features: Sequence[str] = (),
        encoding_dim: int | None = None,
        hidden_units: int | None = None,
        epochs: int = DEFAULT_AUTOENCODER_EPOCHS,
        batch_size: int = DEFAULT_AUTOENCODER_BATCH_SIZE,
        learning_rate: float = 1e-3,
        validation_fraction: float = DEFAULT_AUTOENCODER_VALIDATION_FRACTION,
        patience: int = DEFAULT_AUTOENCODER_PATIENCE,
        threshold_quantile: float = DEFAULT_AUTOENCODER_THRESHOLD_QUANTILE,
        random_state: int = DEFAULT_SEED,
        log_skewed: bool = True,
        on_epoch_end: EpochCallback | None = None,
    ) -> None:
        self.numeric_features = numeric_features
        self.categorical_features = categorical_features
        self.encoding_dim = encoding_dim
        self.hidden_units = hidden_units
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.threshold_quantile = threshold_quantile
        self.random_state = random_state
        self.log_skewed = log_skewed
        self.on_epoch_end = on_epoch_end

    def _check_params(self) -> None:
        if not 0 < self.threshold_quantile < 1:
            raise ValueError(
                f"autoencoder detector: threshold_quantile must be between 0 and 1, got {self.threshold_quantile}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"autoencoder detector: validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"autoencoder detector: epochs and batch_size must be at least 1, got {self.epochs}, {self.batch_size}"
            )

    def _fit(self, numeric: np.ndarray, categorical: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
        keras = _import_keras()
        self.preprocessor_ = TabularPreprocessor(log_skewed=self.log_skewed).fit(numeric, categorical)
        inputs = self.preprocessor_.transform(numeric, categorical).astype(np.float32)
        shuffled = inputs[np.random.default_rng(self.random_state).permutation(len(inputs))]
        n_validation = int(len(inputs) * self.validation_fraction)
        if len(inputs) - n_validation < 1:
            n_validation = 0
        validation, training = shuffled[:n_validation], shuffled[n_validation:]
        monitor = "val_loss" if n_validation else "loss"

        model = self._build_model(keras, inputs.shape[1])
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate),
            loss="mse",
            steps_per_execution=TRAIN_STEPS_PER_EXECUTION,
        )
        callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.EarlyStopping(monitor=monitor, patience=self.patience, restore_best_weights=True)
        ]
        if self.on_epoch_end is not None:
            hook = self.on_epoch_end
            callbacks.append(
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda epoch, logs: hook(epoch, {k: float(v) for k, v in (logs or {}).items()})
                )
            )
        history = model.fit(
            training,
            training,
            validation_data=(validation, validation) if n_validation else None,
            epochs=self.epochs,
            batch_size=self.batch_size,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        ).history
        weights = model.get_weights()
        activations = [activation for _, activation in self._architecture(inputs.shape[1])]
        self.layers_ = [
            (kernel.astype(np.float32), bias.astype(np.float32), activation)
            for kernel, bias, activation in zip(weights[0::2], weights[1::2], activations, strict=True)
        ]
        self.keras_bytes_ = _model_to_bytes(model)

        errors = self._squared_errors(inputs).mean(axis=1)
        self.threshold_ = float(np.quantile(errors, self.threshold_quantile))
        metrics = {
            "epochs_run": len(history["loss"]),
            "final_loss": float(history["loss"][-1]),
            "best_monitored_loss": float(min(history[monitor])),
            "monitored_loss": monitor,
            "n_validation_rows": n_validation,
            "input_width": int(inputs.shape[1]),
        }
        return errors, metrics

    def _architecture(self, width: int) -> list[tuple[int, str | None]]:
        """(units, activation) of each dense layer for `width` input columns."""
        encoding_dim = self.encoding_dim or max(2, width // 3)
        hidden_units = self.hidden_units or max(16, 2 * encoding_dim)
        return [(hidden_units, "relu"), (encoding_dim, None), (hidden_units, "relu"), (width, None)]

    def _build_model(self, keras: Any, width: int) -> keras.Model:
        inputs = keras.Input(shape=(width,))
        outputs = inputs
        for index, (units, activation) in enumerate(self._architecture(width)):
            outputs = keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotUniform(seed=self.random_state + index),
            )(outputs)
        return keras.Model(inputs, outputs, name="anomalens_autoencoder")

    def _reconstruct(self, inputs: np.ndarray) -> np.ndarray:
        """The network's output for `inputs` (float32), computed from `layers_` as Keras' Dense layers do."""
        outputs = inputs
        for kernel, bias, activation in self.layers_:
            outputs = outputs @ kernel + bias
            if activation == "relu":
                outputs = np.maximum(outputs, 0.0, dtype=np.float32)
        return outputs

    def _squared_errors(self, inputs: np.ndarray) -> np.ndarray:
        inputs = inputs.astype(np.float32, copy=False)
        batches = [
            self._reconstruct(inputs[offset : offset + FORWARD_BATCH_SIZE])
            for offset in range(0, len(inputs), FORWARD_BATCH_SIZE)
        ]
        reconstruction = np.concatenate(batches) if batches else np.empty_like(inputs)
        return (inputs.astype(np.float64) - reconstruction.astype(np.float64)) ** 2

    def keras_model(self) -> keras.Model:
        """The trained Keras model (imports TensorFlow): to inspect it, or to score with Keras itself."""
        return _model_from_bytes(self.keras_bytes_)

    def _score(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        return self._squared_errors(self.preprocessor_.transform(numeric, categorical)).mean(axis=1)

    def _contributions(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        errors = self._squared_errors(self.preprocessor_.transform(numeric, categorical))
        return self.preprocessor_.per_feature(errors / errors.shape[1])

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "on_epoch_end": None}


def _import_keras() -> Any:
    """Keras (and so TensorFlow), imported without TensorFlow's start-up lines on stderr.

    Those lines (oneDNN, CPU instructions, absl's "before InitializeLog") are written by C++ straight
    to file descriptor 2 while TensorFlow loads, and TensorFlow 2.19+ no longer honours
    TF_CPP_MIN_LOG_LEVEL for them (tensorflow/tensorflow#100442), hence the redirect during the
    import only; the level still quiets its later C++ messages. An import error still raises.
    """
    if "keras" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _stderr_file_descriptor_silenced():
            import keras  # noqa: F401
        # Its Python logger would only repeat warnings (retracing) that training does not need.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return sys.modules["keras"]


@contextlib.contextmanager
def _stderr_file_descriptor_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _model_to_bytes(model: keras.Model) -> bytes:
    # Keras 3 saves only to a path; the `.keras` zip reloads with identical predictions (legacy .h5 does not).
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        # Keras 3.15 converts TF variables with np.array(copy=False) while saving, which NumPy 2
        # reports as deprecated; the saved weights are exact, so keep the noise out of run logs.
        warnings.filterwarnings(
            "ignore", message="__array__ implementation doesn't accept a copy", category=DeprecationWarning
        )
        path = Path(directory) / "autoencoder.keras"
        model.save(path)
        return path.read_bytes()


def _model_from_bytes(data: bytes) -> keras.Model:
    keras = _import_keras()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "autoencoder.keras"
        path.write_bytes(data)
        return keras.saving.load_model(path, compile=False)
