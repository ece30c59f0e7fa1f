"""A scikit-learn classifier over digitnet's own network and training loop.

:class:`DigitNetClassifier` trains exactly what ``digitnet train`` trains: the parameters come
from :func:`digitnet.network.init_params`, each step is :func:`digitnet.network.forward`,
:func:`~digitnet.network.backward` and an optimizer from :mod:`digitnet.optim`, and the loop is
:class:`digitnet.training.Trainer`. What this module adds is the scikit-learn contract: input
validation, any number of features and classes (labels of any type), ``get_params`` /
``set_params``, ``partial_fit``, and a way to and from the CLI's model files.

    >>> from digitnet import DigitNetClassifier, datasets
    >>> images, labels = datasets.load("mnist", "train")
    >>> clf = DigitNetClassifier(random_state=0).fit(images.reshape(len(images), -1), labels)
    >>> clf.to_model_file("models/sklearn.safetensors")

scikit-learn is an optional dependency: ``pip install 'digitnet[sklearn]'``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("DigitNetClassifier needs scikit-learn >= 1.6: "
                      "pip install 'digitnet[sklearn]'") from exc

from digitnet.errors import ConfigError
from digitnet.estimator_params import (
    ParameterError,
    as_parameter_error,
    require,
    seed_of,
    train_until_converged,
)
from digitnet.model import Model, Preprocessing
from digitnet.network import Params
from digitnet.training import TrainConfig, Trainer, make_config, with_overrides

__all__ = ["DigitNetClassifier", "ParameterError"]

# Input dtypes kept as they are; anything else (int64, object, lists) becomes float64. uint8 is
# kept so that "auto" can recognise pixels and MNIST's 47 MB stays 47 MB.
_INPUT_DTYPES = [np.float64, np.float32, np.uint8]
_MAX_EPOCHS = 100_000  # TrainConfig's epochs bound: min_steps may ask one step an epoch
# The parameters a model file's training config cannot tell (fit's plan and stopping rule).
_NOT_IN_CONFIG = ("epochs", "min_steps", "tol", "n_iter_no_change")


class DigitNetClassifier(ClassifierMixin, BaseEstimator):
    """The digitnet network as a scikit-learn classifier.

    Inputs have shape (n_samples, n_features): 784 pixels per row for MNIST, but any number of
    features works, and labels may be of any type scikit-learn accepts (ints, strings, ...).
    Every hidden layer is ReLU; the output layer is softmax over the classes seen by ``fit``.

    Parameters
    ----------
    hidden_units : int, default=10
        Units in each hidden layer.
    n_layers : int, default=1
        Number of hidden layers (the classic network has one).
    optimizer : {"adam", "momentum", "gd"}, default="adam"
        See :mod:`digitnet.optim`.
    learning_rate : float, default=0.01
        The peak learning rate α of the schedule (the constant one in ``partial_fit``).
    batch_size : int, default=64
        Examples per gradient step; 0 means all of them (full-batch gradient descent).
    epochs : int, default=15
        Passes over the training rows in ``fit``: MNIST's 60,000 rows take 15 (the ``default``
        preset). On fewer rows ``fit`` runs more epochs, as many as ``min_steps`` needs, and
        stops sooner once the training loss stops falling (``tol``, ``n_iter_no_change``).
    l2 : float, default=1e-4
        λ of the L2 penalty λ/2·ΣW² on the weights.
    schedule : {"onecycle", "cosine", "constant"}, default="onecycle"
        Learning-rate schedule over the run; see :class:`digitnet.optim.Schedule`.
    min_steps : int, default=1000
        The fewest gradient steps ``fit`` plans: when ``epochs`` passes take fewer (a few
        hundred rows make a few batches an epoch), the epochs are raised to reach it, so a
        small data set trains as long as a large one needs to. 0 keeps ``epochs`` as given.
    tol : float, default=1e-4
        ``fit`` ends early once the training loss (``loss_curve_``) has not fallen below its
        best by at least ``tol`` for more than ``n_iter_no_change`` epochs in a row
        (scikit-learn's ``MLPClassifier`` rule). With ``validation_size``, the best
        validation epoch is still the one kept.
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` that end ``fit`` (full-batch runs count
        their records, one every 10 steps).
    validation_size : float or int, default=0
        Rows held out to validate after each epoch: a fraction in [0, 1) or a count. When
        positive, the epoch with the best validation accuracy is kept (``validation_scores_``).
    random_state : int, numpy Generator, RandomState or None, default=None
        Seeds the initial weights, the validation split and each epoch's shuffle. None draws a
        fresh seed from the operating system at each ``fit``; the seed used is in ``config_``.
    input_scale : "auto" or float, default="auto"
        How input values become network input, ``x = (X * scale - mean) / std``, fixed at
        ``fit`` (or the first ``partial_fit``) and applied unchanged by ``predict``:

        - ``"auto"`` with ``uint8`` input: pixels 0-255, so ``scale = 1/255`` and ``mean``,
          ``std`` are the training pixels' (exactly what ``digitnet train`` does). Predict then
          accepts uint8 or float pixels 0-255.
        - ``"auto"`` with any other dtype: ``scale = 1`` and ``mean``, ``std`` are those of all
          values of the training ``X`` (one pair, not one per feature: put a ``StandardScaler``
          in front for features on different scales).
        - a positive float ``s``: ``x = X * s``, no centring (``1/255`` is the seed notebook's).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted; output ``k`` of the network is ``classes_[k]``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.
    coefs_ : list of ndarray
        ``coefs_[l]`` is the seed's W(l+1), shape (fan_in, fan_out).
    intercepts_ : list of ndarray
        ``intercepts_[l]`` is b(l+1), shape (fan_out,).
    n_outputs_ : int
        Width of the output layer, ``len(classes_)``.
    preprocessing_ : digitnet.model.Preprocessing
        The input transform chosen by ``input_scale``.
    config_ : digitnet.training.TrainConfig or None
        The training config of the last ``fit`` / ``partial_fit`` (None for a model file
        without one).
    loss_ : float
        Mean training loss (cross-entropy plus L2 penalty) of the last epoch.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_scores_ : list of float or None
        Validation accuracy after each epoch, when ``validation_size > 0``.
    best_validation_score_ : float or None
        The best of ``validation_scores_``; its epoch's weights are the ones kept.
    n_iter_ : int
        Epochs run (``partial_fit`` adds one per call; full-batch runs count records of 10
        steps).
    converged_ : bool
        Whether the last ``fit`` ended early because the loss stopped falling (``tol``).
    history_ : dict of str to list
        Every per-epoch figure the trainer records (loss, accuracy, lr, seconds, ...).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = DigitNetClassifier(hidden_units=32, epochs=30, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    # Set by fit, partial_fit or from_model (never by __init__); declared for type checkers.
    classes_: np.ndarray
    n_features_in_: int
    coefs_: list[np.ndarray]
    intercepts_: list[np.ndarray]
    n_outputs_: int
    preprocessing_: Preprocessing
    config_: TrainConfig | None
    loss_: float | None
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    n_iter_: int
    converged_: bool
    history_: dict[str, list[float]]
    _optimizer_state: dict[str, np.ndarray]
    _meta: dict[str, Any]

    def __init__(
        self,
        hidden_units: int = 10,
        n_layers: int = 1,
        optimizer: str = "adam",
        learning_rate: float = 0.01,
        batch_size: int = 64,
        epochs: int = 15,
        l2: float = 1e-4,
        schedule: str = "onecycle",
        min_steps: int = 1000,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        validation_size: float | int = 0,
        random_state: Any = None,
        input_scale: str | float = "auto",
    ) -> None:
        self.hidden_units = hidden_units
        self.n_layers = n_layers
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.l2 = l2
        self.schedule = schedule
        self.min_steps = min_steps
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.validation_size = validation_size
        self.random_state = random_state
        self.input_scale = input_scale

    # -- training -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> DigitNetClassifier:
        """Train a fresh network on ``X``, ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            uint8 pixels 0-255, or numbers of any scale; see ``input_scale``.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For malformed input (NaN, wrong shapes, a regression target) or a bad
            hyper-parameter (:class:`ParameterError`).
        """
        X, y = validate_data(self, X, y, dtype=_INPUT_DTYPES)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        codes = codes.reshape(-1)
        config = self._config(len(X), partial=False)
        transform = self._input_transform(X)
        trainer = Trainer(config, X, codes, len(self.classes_), transform)
        if trainer.total_steps < self.min_steps:  # few rows: more epochs, as many as needed
            config = self._with_epochs(config, math.ceil(self.min_steps
                                                         / trainer.steps_per_epoch))
            trainer = Trainer(config, X, codes, len(self.classes_), transform)
        self.__dict__.pop("_optimizer_state", None)  # partial_fit after fit: a fresh optimizer
        self.converged_ = train_until_converged(trainer, float(self.tol),
                                                 int(self.n_iter_no_change))
        self._store(trainer, trainer.result(), config, reset=True)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> DigitNetClassifier:
        """Train one epoch on ``X``, ``y``, continuing from the current weights.

        The learning rate is the constant ``learning_rate`` and the optimizer's state (Adam's
        moments) carries over between calls. The input transform is fixed by the first call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), optional
            Every class that will ever be seen; required on the first call (as in
            scikit-learn), optional afterwards, when it must equal ``classes_``.

        Returns
        -------
        self
        """
        first = not hasattr(self, "coefs_")
        if first and classes is None:
            raise ValueError("classes must be given on the first call to partial_fit, e.g. "
                             "partial_fit(X, y, classes=np.arange(10))")
        X, y = validate_data(self, X, y, dtype=_INPUT_DTYPES, reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={list(np.unique(classes))} differs from the classes of "
                             f"the first call, {list(self.classes_)}")
        unseen = np.setdiff1d(y, self.classes_)
        if len(unseen):
            raise ValueError(f"y holds labels {list(unseen)} that are not in classes "
                             f"{list(self.classes_)}")
        codes = np.searchsorted(self.classes_, y)
        config = self._config(len(X), partial=True)
        trainer = Trainer(config, X, codes, len(self.classes_),
                          self._input_transform(X) if first else self.preprocessing_)
        if not first:
            # Continue from this estimator's state: its weights, optimizer and epoch count (which
            # also varies each epoch's shuffle).
            state: dict[str, Any] = {
                "params": Params([w.copy() for w in self.coefs_],
                                 [b.copy() for b in self.intercepts_]),
                "epoch": self.n_iter_}
            if "_optimizer_state" in self.__dict__:
                state["optimizer"] = self._optimizer_state
            trainer.load_state_dict(state)
        self._store(trainer, trainer.run(), config, reset=first)
        self.converged_ = False
        self._optimizer_state = trainer.state_dict()["optimizer"]
        return self

    def _config(self, n_samples: int, partial: bool) -> TrainConfig:
        for name in ("hidden_units", "n_layers", "batch_size", "epochs", "min_steps",
                     "n_iter_no_change"):
            require(name, getattr(self, name), numbers.Integral)
        for name in ("learning_rate", "l2", "tol"):
            require(name, getattr(self, name), numbers.Real)
        for name in ("optimizer", "schedule"):
            require(name, getattr(self, name), str)
        if not 0 <= self.min_steps <= _MAX_EPOCHS:
            raise ParameterError(f"min_steps = {self.min_steps} is out of range; it must be "
                                 f">= 0 and <= {_MAX_EPOCHS:,}", "min_steps")
        if not (math.isfinite(self.tol) and self.tol >= 0):
            raise ParameterError(f"tol = {self.tol!r} must be a finite number >= 0", "tol")
        if self.n_iter_no_change < 1:
            raise ParameterError(f"n_iter_no_change = {self.n_iter_no_change} must be >= 1",
                                 "n_iter_no_change")
        try:
            return make_config(
                "default", dataset="arrays", hidden=int(self.hidden_units),
                layers=int(self.n_layers), optimizer=self.optimizer,
                lr=float(self.learning_rate), batch_size=int(self.batch_size),
                epochs=1 if partial else int(self.epochs), l2=float(self.l2),
                schedule="constant" if partial else self.schedule,
                val_size=0 if partial else self._validation_count(n_samples),
                select_best=not partial, seed=seed_of(self.random_state))
        except ParameterError:
            raise
        except ConfigError as exc:
            raise as_parameter_error(exc) from None

    @staticmethod
    def _with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
        try:
            return with_overrides(config, epochs=epochs)
        except ConfigError as exc:
            raise as_parameter_error(exc) from None

    def _validation_count(self, n_samples: int) -> int:
        size = self.validation_size
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            count = int(size)
            if count < 0:
                raise ParameterError(f"validation_size = {count} must be >= 0",
                                     "validation_size")
        elif isinstance(size, numbers.Real) and 0 <= size < 1:
            count = math.ceil(float(size) * n_samples)
        else:
            raise ParameterError(f"validation_size = {size!r} must be a fraction in [0, 1) or "
                                 "a count of rows", "validation_size")
        if count >= n_samples:
            raise ParameterError(f"validation_size = {size!r} holds out {count} of "
                                 f"{n_samples} rows, leaving none to train on",
                                 "validation_size")
        return count

    def _input_transform(self, X: np.ndarray) -> Preprocessing | None:
        """The input transform ``input_scale`` asks for; None lets the trainer use pixels'."""
        scale = self.input_scale
        if isinstance(scale, str):
            if scale != "auto":
                raise ParameterError(f"input_scale = {scale!r}; use 'auto' or a positive number",
                                     "input_scale")
            if X.dtype == np.uint8:
                return None
            mean = float(np.mean(X, dtype=np.float64))
            std = float(np.std(X, dtype=np.float64))
            return Preprocessing(1.0, mean, std if std > 0 and math.isfinite(std) else 1.0)
        if (not isinstance(scale, numbers.Real) or isinstance(scale, bool)
                or not math.isfinite(scale) or scale <= 0):
            raise ParameterError(f"input_scale = {scale!r}; use 'auto' or a positive number",
                                 "input_scale")
        return Preprocessing(float(scale), 0.0, 1.0)

    def _store(self, trainer: Trainer, model: Model, config: TrainConfig, reset: bool) -> None:
        """Copy what a training run produced into the fitted attributes."""
        self.coefs_ = list(model.params.W)
        self.intercepts_ = list(model.params.b)
        self.n_outputs_ = len(self.classes_)
        self.preprocessing_ = trainer.preprocessing
        self.config_ = config
        history = {k: list(v) for k, v in trainer.history.items()}
        if not reset:
            history = {k: [*self.history_.get(k, []), *v] for k, v in history.items()}
        self.history_ = history
        self.loss_curve_ = list(history["loss"])
        self.loss_ = self.loss_curve_[-1]
        self.n_iter_ = len(self.loss_curve_)
        if config.val_size:
            self.validation_scores_ = list(trainer.history["val_accuracy"])
            self.best_validation_score_ = max(self.validation_scores_)
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self._meta = {**model.meta, "history": history, "trained_with": "DigitNetClassifier",
                      "estimator": {name: getattr(self, name) for name in _NOT_IN_CONFIG}}

    # -- prediction ---------------------------------------------------------------------------

    def to_model(self) -> Model:
        """The fitted network as a :class:`digitnet.model.Model` (copies of the weights).

        Its outputs are the indices 0..n_classes-1 into ``classes_``.
        """
        check_is_fitted(self)
        params = Params([np.array(w) for w in self.coefs_],
                        [np.array(b) for b in self.intercepts_])
        return Model(params, self.preprocessing_, dict(getattr(self, "_meta", {})))

    def _network(self) -> Model:
        return Model(Params(list(self.coefs_), list(self.intercepts_)), self.preprocessing_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Column ``k`` is the probability of ``classes_[k]``; rows sum to 1. The dtype is the
            weights' (float32 unless loaded from a float64 model file).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_INPUT_DTYPES, reset=False)
        return self._network().predict_proba(X)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Natural logarithm of :meth:`predict_proba`, shape (n_samples, n_classes)."""
        probabilities = self.predict_proba(X)
        with np.errstate(divide="ignore"):  # a probability of exactly 0 has log -inf
            return np.log(probabilities)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels taken from ``classes_``.
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- model files --------------------------------------------------------------------------

    def to_model_file(self, path: str | Path) -> Path:
        """Save the fitted network as a digitnet model file (what ``digitnet train`` writes).

        A model file's classes are its output indices, so ``classes_`` must be the integers
        0..k-1 (MNIST's digits are); encode other labels first, e.g. with ``LabelEncoder``.

        Parameters
        ----------
        path : str or Path
            Where to write; written atomically, folders created.

        Returns
        -------
        Path
            The path written.

        Raises
        ------
        ValueError
            If ``classes_`` are not the integers 0..k-1.
        ModelFileError
            If the file cannot be written.
        """
        from digitnet import modelfile

        check_is_fitted(self)
        classes = np.asarray(self.classes_)
        if classes.dtype.kind not in "iu" or not np.array_equal(classes,
                                                               np.arange(len(classes))):
            shown = ", ".join(map(repr, classes[:12].tolist()))
            raise ValueError(f"a model file stores the classes 0..k-1 as output indices, but "
                             f"this classifier's classes are [{shown}]; encode the labels as "
                             "0..k-1 (e.g. sklearn.preprocessing.LabelEncoder) before fit")
        return modelfile.save(self.to_model(), path)

    @classmethod
    def from_model(cls, model: Model) -> DigitNetClassifier:
        """A fitted classifier over a :class:`digitnet.model.Model`'s network.

        ``classes_`` is ``arange(n_outputs)``; the hyper-parameters are read from the model's
        training config where it has one, so ``clone`` and ``fit`` retrain the same way.
        """
        sizes = model.sizes
        saved = model.meta.get("config")
        saved = saved if isinstance(saved, dict) else {}
        own = model.meta.get("estimator")  # what a DigitNetClassifier's file adds
        own = {k: v for k, v in own.items() if k in _NOT_IN_CONFIG} \
            if isinstance(own, dict) else {}
        pre = model.preprocessing
        standardized = pre.mean != 0.0 or pre.std != 1.0
        clf = cls(
            hidden_units=sizes[1] if len(sizes) > 2 else 10,
            n_layers=max(1, len(sizes) - 2),
            optimizer=saved.get("optimizer", "adam"),
            learning_rate=saved.get("lr", 0.01),
            batch_size=saved.get("batch_size", 64),
            epochs=own.pop("epochs", saved.get("epochs", 15)),
            l2=saved.get("l2", 1e-4),
            schedule=saved.get("schedule", "onecycle"),
            **own,
            validation_size=saved.get("val_size", 0),
            random_state=saved.get("seed"),
            input_scale="auto" if standardized else pre.scale,
        )
        clf.classes_ = np.arange(sizes[-1])
        clf.n_features_in_ = sizes[0]
        clf.n_outputs_ = sizes[-1]
        clf.coefs_ = [np.array(w) for w in model.params.W]
        clf.intercepts_ = [np.array(b) for b in model.params.b]
        clf.preprocessing_ = pre
        known = {f.name for f in fields(TrainConfig)}
        clf.config_ = TrainConfig(**{k: v for k, v in saved.items() if k in known}) \
            if saved else None
        history = model.meta.get("history")
        clf.history_ = {k: list(v) for k, v in history.items()} if isinstance(history, dict) \
            else {}
        clf.loss_curve_ = list(clf.history_.get("loss", []))
        clf.loss_ = clf.loss_curve_[-1] if clf.loss_curve_ else None
        clf.n_iter_ = len(clf.loss_curve_)
        clf.validation_scores_ = None
        clf.best_validation_score_ = None
        clf.converged_ = False
        clf._meta = dict(model.meta)
        return clf

    @classmethod
    def from_model_file(cls, path: str | Path) -> DigitNetClassifier:
        """A fitted classifier from a digitnet model file (e.g. one ``digitnet train`` wrote).

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        DigitNetClassifier
            With ``classes_ = arange(n_outputs)`` (0-9 for MNIST).

        Raises
        ------
        ModelFileError
            If the file is missing or not a digitnet model.
        """
        from digitnet import modelfile

        return cls.from_model(modelfile.load(path))
