"""digitnet: the classic 784-10-10 MNIST network, from scratch in NumPy.

Quick start::

    >>> from digitnet import datasets, metrics, modelfile, training
    >>> images, labels = datasets.load("mnist", "train")   # uint8 (60000, 28, 28), (60000,)
    >>> model = training.train(training.make_config("default"), images, labels)
    >>> test_images, test_labels = datasets.load("mnist", "test")
    >>> metrics.accuracy(test_labels, model.predict(test_images))
    >>> modelfile.save(model, "models/default.safetensors")

Layers, each using only those below it (checked by ``make lint``):

- core: ``network`` (forward, backward, loss: pure NumPy), ``optim`` (gradient descent,
  momentum, Adam, the loss watch, schedules), ``preprocessing``, ``errors``;
- ``fast`` (the engines that run the steps, and the one predictor), then ``model`` (a trained
  network with its preprocessing), ``metrics``, ``gradcheck``;
- training: ``training`` (the config, presets, and the trainer with its events, ``stop()`` and
  ``state_dict()``), ``augment``, ``checkpoint``;
- data and files: ``datasets`` (find, fetch, verify, parse), ``runner`` (train on a named
  dataset), ``modelfile``, ``imaging`` (a person's image as MNIST input), ``export`` (ONNX);
- applications: ``cli``, ``web``, ``estimator`` (``DigitNetClassifier`` for scikit-learn),
  ``report``, ``robustness``, ``bench``.

``digitnet.DigitNetClassifier`` is imported on first use, so ``import digitnet`` does not import
scikit-learn.
"""

from digitnet._version import __version__

__all__ = ["__version__"]


def __getattr__(name: str):
    # Lazy, so that scikit-learn is imported only by those who use the estimator.
    if name == "DigitNetClassifier":
        from digitnet.estimator import DigitNetClassifier

        return DigitNetClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
