"""DigitNetClassifier: scikit-learn's own estimator checks, the digitnet trainer underneath,
model-file round trips, and a Pipeline and GridSearchCV on real MNIST."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import digitnet  # noqa: E402
from digitnet import datasets, modelfile, network, training  # noqa: E402
from digitnet.errors import DigitnetError, ModelFileError  # noqa: E402
from digitnet.estimator import DigitNetClassifier, ParameterError  # noqa: E402
from digitnet.model import Model, Preprocessing  # noqa: E402


# Every check with the default parameters: fit's min_steps and tol/n_iter_no_change make the
# same defaults train MNIST's 60,000 rows and the checks' 10 to 300 rows.
@parametrize_with_checks([DigitNetClassifier()])
def test_sklearn_estimator_checks(estimator, check) -> None:
    name = getattr(check, "func", check).__name__
    if name == "check_array_api_input" and not os.environ.get("SCIPY_ARRAY_API"):
        # scikit-learn skips this check unless SCIPY_ARRAY_API=1 was set before scipy was
        # imported, so it runs in a fresh interpreter that has it.
        run_array_api_check(estimator, check.keywords)
    else:
        check(estimator)


def run_array_api_check(estimator: DigitNetClassifier, keywords: dict) -> None:
    code = textwrap.dedent(f"""
        from sklearn.utils.estimator_checks import check_array_api_input
        from digitnet.estimator import DigitNetClassifier
        estimator = DigitNetClassifier(**{estimator.get_params()!r})
        check_array_api_input("DigitNetClassifier", estimator, **{keywords!r})
    """)
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# -- small synthetic data ------------------------------------------------------------------


def pixels(n: int = 200, n_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 'images' whose class is written as a bright block at a class-specific place."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.integers(0, 60, size=(n, 784), dtype=np.uint8)
    for k in range(n_classes):
        X[y == k, k * 70:k * 70 + 50] = 250
    return X, y


def test_defaults_are_the_default_preset() -> None:
    params = DigitNetClassifier().get_params()
    preset = training.make_config("default")
    assert params["hidden_units"] == preset.hidden == 10
    assert params["n_layers"] == preset.layers == 1
    assert params["optimizer"] == preset.optimizer
    assert params["learning_rate"] == preset.lr
    assert params["batch_size"] == preset.batch_size
    assert params["epochs"] == preset.epochs
    assert params["l2"] == preset.l2
    assert params["schedule"] == preset.schedule
    assert params["validation_size"] == 0 and params["input_scale"] == "auto"


def test_fit_is_the_digitnet_trainer() -> None:
    """Same seed and data: the estimator's weights are bit-identical to the trainer's."""
    X, y = pixels()
    clf = DigitNetClassifier(epochs=3, min_steps=0, random_state=7).fit(X, y)
    config = training.make_config("default", dataset="arrays", epochs=3, val_size=0, seed=7)
    model = training.Trainer(config, X, y, 10).run()
    for ours, theirs in zip([*clf.coefs_, *clf.intercepts_], [*model.params.W, *model.params.b],
                            strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert clf.preprocessing_ == model.preprocessing
    assert clf.loss_curve_ == model.meta["history"]["loss"]
    assert clf.n_iter_ == 3 and clf.config_.seed == 7
    np.testing.assert_array_equal(clf.predict_proba(X), model.predict_proba(X))


def test_learned_attributes_and_shapes() -> None:
    X, y = pixels()
    clf = DigitNetClassifier(hidden_units=12, n_layers=2, epochs=20, min_steps=0,
                             random_state=0).fit(X, y)
    assert [w.shape for w in clf.coefs_] == [(784, 12), (12, 12), (12, 10)]
    assert [b.shape for b in clf.intercepts_] == [(12,), (12,), (10,)]
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_features_in_ == 784 and clf.n_outputs_ == 10
    assert len(clf.loss_curve_) == clf.n_iter_ == 20
    assert clf.loss_ == clf.loss_curve_[-1]
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert not clf.converged_
    assert clf.score(X, y) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_same_seed_same_weights_and_caller_data_untouched() -> None:
    X, y = pixels()
    X_before, y_before = X.copy(), y.copy()
    a = DigitNetClassifier(epochs=2, min_steps=0, random_state=1).fit(X, y)
    b = DigitNetClassifier(epochs=2, min_steps=0, random_state=1).fit(X, y)
    c = DigitNetClassifier(epochs=2, min_steps=0, random_state=2).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_uint8_input_is_pixels_and_float_input_is_standardized() -> None:
    X, y = pixels()
    on_pixels = DigitNetClassifier(epochs=1, min_steps=0, random_state=0).fit(X, y)
    pre = on_pixels.preprocessing_
    assert pre.scale == pytest.approx(1 / 255)
    assert pre.mean == pytest.approx(X.mean() / 255)
    assert pre.std == pytest.approx(X.std() / 255)
    # Fitted on uint8, it reads the same pixels as floats 0-255 identically.
    np.testing.assert_array_equal(on_pixels.predict_proba(X),
                                  on_pixels.predict_proba(X.astype(np.float64)))

    F = np.random.default_rng(0).normal(5.0, 3.0, size=(50, 4))
    labels = np.arange(50) % 2
    on_floats = DigitNetClassifier(epochs=1, min_steps=0, random_state=0).fit(F, labels)
    assert on_floats.preprocessing_ == Preprocessing(1.0, F.mean(), F.std())

    fixed = DigitNetClassifier(epochs=1, min_steps=0, random_state=0,
                               input_scale=1 / 255).fit(X, y)
    assert fixed.preprocessing_ == Preprocessing(1 / 255, 0.0, 1.0)


def test_any_labels_and_features() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    names = np.array(["cat", "dog", "emu"])
    y = names[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0)]
    clf = DigitNetClassifier(random_state=3).fit(X, y)  # the defaults, on 90 rows
    np.testing.assert_array_equal(clf.classes_, names)
    assert set(clf.predict(X)) <= set(names)
    assert clf.score(X, y) > 0.8
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.predict(X), names[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


def test_validation_keeps_the_best_epoch() -> None:
    X, y = pixels(300)
    clf = DigitNetClassifier(epochs=5, min_steps=0, validation_size=0.2,
                             random_state=0).fit(X, y)
    assert clf.config_.val_size == 60
    assert len(clf.validation_scores_) == 5
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    counted = DigitNetClassifier(epochs=1, min_steps=0, validation_size=30,
                                 random_state=0).fit(X, y)
    assert counted.config_.val_size == 30


@pytest.mark.parametrize(("params", "named"), [
    ({"hidden_units": 0}, "hidden_units"),
    ({"hidden_units": 2.5}, "hidden_units"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"epochs": "many"}, "epochs"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"schedule": "linear"}, "schedule"),
    ({"validation_size": 1.5}, "validation_size"),
    ({"validation_size": 200}, "validation_size"),
    ({"input_scale": "pixels"}, "input_scale"),
    ({"input_scale": -2.0}, "input_scale"),
    ({"random_state": -1}, "random_state"),
    ({"n_layers": 9}, "n_layers"),
    ({"l2": -0.5}, "l2"),
    ({"min_steps": -1}, "min_steps"),
    ({"min_steps": 10**6}, "min_steps"),
    ({"tol": -1e-3}, "tol"),
    ({"tol": float("nan")}, "tol"),
    ({"n_iter_no_change": 0}, "n_iter_no_change"),
    ({"n_iter_no_change": 2.5}, "n_iter_no_change"),
])
def test_bad_hyper_parameters_fail_in_fit_with_their_name(params: dict, named: str) -> None:
    X, y = pixels()
    clf = DigitNetClassifier(**params)  # constructing never validates (scikit-learn's rule)
    with pytest.raises(ParameterError, match=named) as caught:
        clf.fit(X, y)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DigitnetError)
    assert caught.value.field == named  # the estimator's name, not TrainConfig's "hidden"


# -- how long fit trains -------------------------------------------------------------------


def test_small_data_gets_at_least_min_steps() -> None:
    X, y = pixels(200)  # batches of 64: 4 steps an epoch
    planned = DigitNetClassifier(min_steps=100, tol=0.0, random_state=1).fit(X, y)
    assert planned.config_.epochs == 25  # ceil(100 / 4)
    enough = DigitNetClassifier(min_steps=40, random_state=1).fit(X, y)
    assert enough.config_.epochs == 15  # 15 epochs are 60 steps already
    default = DigitNetClassifier(random_state=1).fit(X, y)
    assert default.config_.epochs == 250  # the default min_steps, 1000
    assert default.n_iter_ <= 250


def test_fit_stops_when_the_loss_stops_falling() -> None:
    """scikit-learn's rule: stop once the loss has missed its best by tol more than
    n_iter_no_change epochs in a row. No epoch improves by tol = 100, so the first epoch sets
    the best and epochs 2 to 5 miss it: the fifth is the fourth miss, more than three."""
    X, y = pixels(200)
    clf = DigitNetClassifier(epochs=20, min_steps=0, tol=100.0, n_iter_no_change=3,
                             random_state=4).fit(X, y)
    assert clf.n_iter_ == 5 and clf.converged_
    # The weights are those of the same run stopped after its fifth epoch.
    trainer = training.Trainer(clf.config_, X, y, 10)
    for record in trainer.events():
        if record.epoch == 5:
            trainer.stop()
    assert trainer.stopped and trainer.epoch == 5
    model = trainer.result()
    for ours, theirs in zip(clf.coefs_, model.params.W, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_converged_default_fit_obeys_the_rule() -> None:
    X, y = pixels(120, n_classes=4, seed=5)  # 2 steps an epoch: 500 epochs planned
    clf = DigitNetClassifier(random_state=5).fit(X, y)
    assert clf.converged_ and clf.n_iter_ < clf.config_.epochs == 500
    loss, patience = clf.loss_curve_, clf.n_iter_no_change
    # Each of the last n_iter_no_change + 1 epochs missed the best before it by tol.
    best = min(loss[:-(patience + 1)])
    for value in loss[-(patience + 1):]:
        assert value > best - clf.tol
        best = min(best, value)
    assert clf.score(X, y) == 1.0


def test_random_state_may_be_a_generator_or_randomstate() -> None:
    X, y = pixels(50)
    for state in (np.random.default_rng(0), np.random.RandomState(0), None):
        clf = DigitNetClassifier(epochs=1, min_steps=0, random_state=state).fit(X, y)
        assert 0 <= clf.config_.seed < 2**63


def test_partial_fit_continues_training() -> None:
    X, y = pixels(300)
    clf = DigitNetClassifier(random_state=0, learning_rate=0.005)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    first = [w.copy() for w in clf.coefs_]
    for _ in range(6):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 7 and len(clf.loss_curve_) == 7
    assert clf.loss_curve_[-1] < clf.loss_curve_[1]
    assert not np.array_equal(first[0], clf.coefs_[0])
    assert clf.config_.schedule == "constant"
    assert clf.preprocessing_.mean == pytest.approx(X[:100].mean() / 255)  # fixed by call one
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:5], np.array([0, 1, 2, 3, 11]))
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(X, y, classes=np.arange(11))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :10], y)


def test_partial_fit_with_string_classes_seen_in_later_batches() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    clf = DigitNetClassifier(random_state=0)
    clf.partial_fit(X[:10], np.array(["a"] * 10), classes=["b", "a", "c"])
    clf.partial_fit(X[10:], np.array(["c", "b"] * 15))
    np.testing.assert_array_equal(clf.classes_, ["a", "b", "c"])
    assert clf.predict_proba(X).shape == (40, 3)


def test_feature_names_from_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    X, y = pixels(60)
    frame = pd.DataFrame(X[:, :20], columns=[f"px{k}" for k in range(20)])
    clf = DigitNetClassifier(epochs=1, min_steps=0, random_state=0).fit(frame, y[:60])
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X[:, :20])


def test_pickle_and_clone() -> None:
    X, y = pixels()
    clf = DigitNetClassifier(hidden_units=7, epochs=2, min_steps=0, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params() and not hasattr(fresh, "coefs_")


# -- model files ---------------------------------------------------------------------------


def test_model_file_round_trip(tmp_path: Path) -> None:
    X, y = pixels()
    clf = DigitNetClassifier(hidden_units=8, epochs=3, min_steps=0, random_state=0).fit(X, y)
    path = clf.to_model_file(tmp_path / "sub" / "clf.safetensors")
    model = modelfile.load(path)
    assert model.sizes == (784, 8, 10)
    assert model.meta["config"]["seed"] == 0 and model.meta["history"]["loss"] == clf.loss_curve_
    np.testing.assert_array_equal(model.predict(X), clf.predict(X))

    back = DigitNetClassifier.from_model_file(path)
    np.testing.assert_array_equal(back.classes_, np.arange(10))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.get_params() == clf.get_params()
    assert back.loss_curve_ == clf.loss_curve_ and back.n_iter_ == 3
    assert back.get_params()["min_steps"] == 0  # fit's plan travels in the file


def test_from_a_cli_trained_model_file(tmp_path: Path) -> None:
    X, y = pixels()
    config = training.make_config("seed", iterations=20, val_size=50)
    model = training.train(config, X.reshape(-1, 28, 28), y)
    path = modelfile.save(model, tmp_path / "seed.safetensors")
    clf = DigitNetClassifier.from_model_file(path)
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    np.testing.assert_array_equal(clf.predict(X), model.predict(X))
    assert clf.score(X, y) == pytest.approx(float(np.mean(model.predict(X) == y)))
    # Its hyper-parameters are the file's config, so a clone retrains the same way.
    params = clf.get_params()
    assert params["optimizer"] == "gd" and params["learning_rate"] == 0.10
    assert params["input_scale"] == pytest.approx(1 / 255)  # the seed does not standardize
    assert params["random_state"] == config.seed
    # ... and it keeps learning from where the file left off.
    clf.partial_fit(X, y)
    assert clf.n_iter_ == len(model.meta["history"]["loss"]) + 1


def test_model_file_needs_classes_zero_to_k(tmp_path: Path) -> None:
    X, y = pixels(60, n_classes=3)
    for labels in (np.array(["a", "b", "c"])[y], y + 1):
        clf = DigitNetClassifier(epochs=1, min_steps=0, random_state=0).fit(X, labels)
        with pytest.raises(ValueError, match="0..k-1"):
            clf.to_model_file(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_from_model_file_refuses_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="junk.safetensors"):
        DigitNetClassifier.from_model_file(junk)


def test_from_model_for_a_bare_model() -> None:
    params = network.init_params((6, 4, 4, 3), np.random.default_rng(0))
    clf = DigitNetClassifier.from_model(Model(params, Preprocessing(1.0, 0.0, 1.0)))
    assert clf.get_params()["n_layers"] == 2 and clf.get_params()["hidden_units"] == 4
    assert clf.config_ is None and clf.loss_curve_ == [] and clf.n_iter_ == 0
    X = np.random.default_rng(1).normal(size=(5, 6))
    np.testing.assert_array_equal(clf.predict(X), network.predict(params, X))


def test_importing_digitnet_does_not_import_sklearn() -> None:
    code = ("import sys, digitnet; assert 'sklearn' not in sys.modules; "
            "digitnet.DigitNetClassifier; assert 'sklearn' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert digitnet.DigitNetClassifier is DigitNetClassifier
    with pytest.raises(AttributeError):
        digitnet.NoSuchThing  # noqa: B018


# -- real MNIST ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_subset(mnist_dir: Path) -> tuple[np.ndarray, ...]:
    """5,000 training and 1,000 test images of the real MNIST, as rows of 784 pixels."""
    images, labels = datasets.load("mnist", "train", mnist_dir)
    test_images, test_labels = datasets.load("mnist", "test", mnist_dir)
    return (images[:5000].reshape(5000, 784), labels[:5000],
            test_images[:1000].reshape(1000, 784), test_labels[:1000])


@pytest.mark.mnist
def test_pipeline_on_mnist(mnist_subset: tuple[np.ndarray, ...]) -> None:
    X, y, X_test, y_test = mnist_subset
    pipe = Pipeline([("pca", PCA(n_components=50, random_state=0)),
                     ("net", DigitNetClassifier(random_state=0))]).fit(X, y)
    assert pipe.named_steps["net"].n_features_in_ == 50
    assert pipe.score(X_test, y_test) > 0.85


@pytest.mark.mnist
def test_grid_search_over_hidden_units_on_mnist(mnist_subset: tuple[np.ndarray, ...]) -> None:
    X, y, X_test, y_test = mnist_subset
    search = GridSearchCV(DigitNetClassifier(random_state=0), {"hidden_units": [10, 32]},
                          cv=3).fit(X, y)
    assert list(search.cv_results_["param_hidden_units"]) == [10, 32]
    assert search.best_params_["hidden_units"] in (10, 32)
    assert search.best_score_ > 0.85
    best = search.best_estimator_
    assert best.coefs_[0].shape == (784, search.best_params_["hidden_units"])
    assert search.score(X_test, y_test) > 0.85
