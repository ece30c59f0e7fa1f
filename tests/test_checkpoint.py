"""Checkpoints: a stopped run resumes to the very weights an unbroken run ends with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from digitnet import checkpoint, modelfile, training
from digitnet.errors import ModelFileError
from tiny_data import prototypes

DIGITNET = Path(sys.executable).with_name("digitnet")


def blobs(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    images, labels = prototypes(n, seed)
    return images.reshape(n, 28, 28), labels.astype(np.uint8)


def same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.arrays().values(), b.arrays().values(),
                                                    strict=True))


def stop_after(trainer: training.Trainer, epochs: int):
    """A callback that stops ``trainer`` once ``epochs`` epochs are done."""
    def callback(record: training.Progress) -> None:
        if record.epoch >= epochs:
            trainer.stop()
    return callback


@pytest.mark.parametrize("backend", ["reference", "numpy"])
@pytest.mark.parametrize("augment", [0.0, 1.0])
def test_resumed_run_equals_unbroken_run(tmp_path, backend, augment):
    images, labels = blobs()
    config = training.make_config("default", epochs=5, val_size=100, augment=augment)
    unbroken = training.Trainer(config, images, labels, backend=backend).run()

    stopped = training.Trainer(config, images, labels, backend=backend)
    stopped.run(stop_after(stopped, 2))
    assert stopped.stopped and (stopped.epoch, stopped.epochs) == (2, 5)
    path = checkpoint.save(stopped, tmp_path / "run.ckpt")

    info, arrays = checkpoint.read(path)
    resumed = training.Trainer(checkpoint.config_of(info), images, labels, backend=backend)
    checkpoint.restore(resumed, info, arrays)
    model = resumed.run()
    assert same_weights(model.params, unbroken.params)
    assert model.meta["history"]["val_accuracy"] == unbroken.meta["history"]["val_accuracy"]
    assert model.meta["metrics"]["chosen_epoch"] == unbroken.meta["metrics"]["chosen_epoch"]


def test_a_checkpoint_keeps_the_optimizer_state(tmp_path):
    images, labels = blobs()
    trainer = training.Trainer(training.make_config("default", epochs=3, val_size=100),
                               images, labels, backend="reference")
    trainer.run(stop_after(trainer, 1))
    info, arrays = checkpoint.read(checkpoint.save(trainer, tmp_path / "c.ckpt"))
    assert info["epoch"] == 1 and info["step"] == trainer.step
    saved = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    state = trainer.optimizer.state()
    assert set(saved) == set(state)
    for key, value in state.items():
        assert np.array_equal(np.asarray(saved[key]).reshape(np.shape(value)), value)


def test_a_model_file_is_not_a_checkpoint(tmp_path):
    images, labels = blobs()
    model = training.train(training.make_config("default", epochs=1, val_size=100),
                           images, labels)
    path = modelfile.save(model, tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError, match="not a digitnet checkpoint"):
        checkpoint.read(path)
    (tmp_path / "junk.ckpt").write_bytes(b"\x00" * 5)
    with pytest.raises(ModelFileError, match="not a digitnet checkpoint"):
        checkpoint.read(tmp_path / "junk.ckpt")
    with pytest.raises(ModelFileError, match="no such checkpoint"):
        checkpoint.read(tmp_path / "missing.ckpt")


# --------------------------------------------------------------------------------------------
# The command, stopped by a signal in a real process, on the real MNIST

EPOCHS = "40"


def train_cmd(mnist_dir: Path, out: Path, *extra: str) -> list[str]:
    return [str(DIGITNET), "train", "--data-dir", str(mnist_dir), "--epochs", EPOCHS,
            "--quiet", "--out", str(out), *extra]


def wait_for(path: Path, process: subprocess.Popen, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, f"no checkpoint at {path}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def unbroken(mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unbroken") / "model.safetensors"
    subprocess.run(train_cmd(mnist_dir, out), check=True, capture_output=True)
    return out


@pytest.mark.mnist
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                    (signal.SIGTERM, 143, "terminated")])
def test_a_signal_saves_a_checkpoint_and_resume_finishes_the_same(
        mnist_dir, unbroken, tmp_path, sig, code, word):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"the previous model")
    ckpt = tmp_path / "run.ckpt"
    process = subprocess.Popen(
        train_cmd(mnist_dir, out, "--checkpoint", str(ckpt), "--checkpoint-every", "2"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(ckpt, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert stderr.startswith(f"{word}: training stopped after epoch ")
    assert "--resume" in stderr and "Traceback" not in stderr
    assert out.read_bytes() == b"the previous model"  # nothing lost, nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    resumed = subprocess.run([str(DIGITNET), "train", "--resume", str(ckpt), "--out", str(out),
                              "--data-dir", str(mnist_dir), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(modelfile.load(out).params, modelfile.load(unbroken).params)


@pytest.mark.mnist
def test_killed_run_resumes_from_its_last_checkpoint(mnist_dir, unbroken, tmp_path):
    out = tmp_path / "model.safetensors"
    ckpt = tmp_path / "run.ckpt"
    process = subprocess.Popen(
        train_cmd(mnist_dir, out, "--checkpoint", str(ckpt), "--checkpoint-every", "5"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(ckpt, process)
    os.kill(process.pid, signal.SIGKILL)  # no chance to save anything more
    process.wait(timeout=60)
    assert not out.exists()
    resumed = subprocess.run([str(DIGITNET), "train", "--resume", str(ckpt), "--out", str(out),
                              "--data-dir", str(mnist_dir), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(modelfile.load(out).params, modelfile.load(unbroken).params)


def test_resume_refuses_new_settings(tmp_path):
    result = subprocess.run([str(DIGITNET), "train", "--resume", str(tmp_path / "x.ckpt"),
                             "--lr", "0.5"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "--lr cannot change a resumed run" in result.stderr
    assert "Traceback" not in result.stderr
