"""Tests of ``digitnet sweep``: workers sharing a journal file or a real PostgreSQL server,
a worker killed mid-trial, the search, the figure, and every bad input as one line."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from digitnet import sweep as sw  # noqa: E402
from digitnet import sweepresults  # noqa: E402
from digitnet.errors import ConfigError  # noqa: E402
from digitnet.sweepstore import SweepError, masked_url, open_storage  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
SMALL = ["--hidden", "2,4,8", "--layers", "1", "--seeds", "2", "--epochs", "1",
         "--val-size", "1000", "--heartbeat", "1"]
PASSWORD = "s3cret-Pw"


def digitnet(*args: str, data: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if data is not None:
        env["DIGITNET_DATA"] = str(data)
    return subprocess.run([sys.executable, "-m", "digitnet.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def journal_study(out: Path, name: str = "digitnet-grid"):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def assert_each_point_once(study, points: int) -> None:
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    keys = Counter((t.params["hidden"], t.params["layers"], t.params["seed"]) for t in complete)
    assert len(keys) == points
    assert set(keys.values()) == {1}, keys
    # no point trained twice: every other trial ended without a result
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.get_trials())


def assert_one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- the library's pieces ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0,abc", "", "4,,8", "abc", "8,8", "5000", "-1"])
def test_bad_lists_are_refused_with_the_option_named(text):
    with pytest.raises(ConfigError, match="--hidden"):
        sw.parse_int_list(text, "--hidden")


def test_lists_parse_in_order():
    assert sw.parse_int_list(" 16, 2,4", "--hidden") == (16, 2, 4)


def test_parameter_count_of_the_seed_network():
    assert sw.parameter_count(10, 1) == 784 * 10 + 10 + 10 * 10 + 10  # 7,960
    assert sw.parameter_count(4, 2) == 784 * 4 + 4 + 4 * 4 + 4 + 4 * 10 + 10


def test_masked_url_hides_the_password():
    shown = masked_url(f"postgresql://me:{PASSWORD}@db.example:5432/sweeps")
    assert PASSWORD not in shown and "***" in shown and "db.example" in shown


def test_storage_urls_are_checked(tmp_path):
    with pytest.raises(SweepError, match="not supported"):
        open_storage(f"mysql://me:{PASSWORD}@host/db", tmp_path)
    with pytest.raises(SweepError, match="not a database URL"):
        open_storage("not a url at all", tmp_path)
    with pytest.raises(SweepError, match="names no database"):
        open_storage(f"postgresql://me:{PASSWORD}@host", tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepError, match="is a file"):
        open_storage(None, tmp_path / "file")


def test_the_figure_has_a_line_per_depth_and_dashed_train(tmp_path):
    rows = [{"hidden": h, "layers": n, "seeds": 2, "test_mean": 0.9, "test_sd": 0.01,
             "train_mean": 0.95} for n in (1, 2) for h in (2, 4, 8)]
    fig = sweepresults.sweep_figure(rows)
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        styles = [line.get_linestyle() for line in ax.get_lines()]
        assert styles.count("--") == 2  # a train line per depth
    assert fig.axes[1].get_ylim() == (90, 100)
    path = sweepresults.write_figure(rows, tmp_path / "sweep.png")
    assert path.read_bytes().startswith(b"\x89PNG")


# -- bad input on the command line ------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--hidden", "0,abc"], ["--hidden", "0,abc"]),
    (["--hidden", ""], ["--hidden", "comma-separated"]),
    (["--layers", "1,9"], ["--layers", "9"]),
    (["--workers", "0"], ["--workers 0"]),
    (["--seeds", "0"], ["--seeds 0"]),
    (["--epochs", "0"], ["epochs"]),
    (["--search", "--hidden", "8,16", "--trials", "2"], ["one architecture"]),
    (["--search"], ["--trials"]),
])
def test_bad_options_are_one_line_and_store_nothing(tmp_path, args, words):
    result = digitnet("sweep", *args, "--out", str(tmp_path / "out"))
    assert_one_error_line(result, *words)
    assert not (tmp_path / "out" / "study.journal").exists()


def test_a_pruned_trial_stops_training_at_once():
    import numpy as np

    from digitnet import runner
    from digitnet.training import make_config

    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    trial = study.ask()  # any accuracy is below 1.01, so the first report prunes it
    rng = np.random.default_rng(3)
    data = runner.Data("mnist", rng.integers(0, 256, (400, 28, 28), dtype=np.uint8),
                       rng.integers(0, 10, 400), rng.integers(0, 256, (50, 28, 28),
                                                              dtype=np.uint8),
                       rng.integers(0, 10, 50), None, None, tuple("0123456789"))
    with pytest.raises(optuna.TrialPruned):
        sw._train(trial, make_config(hidden=4, epochs=5, val_size=100), data, prune=True)
    assert list(study.trials[0].intermediate_values) == [1]  # stopped after its first epoch


@pytest.mark.parametrize("url, words", [
    (f"mysql://me:{PASSWORD}@localhost/db", ["not supported", "***"]),
    (f"postgresql://me:{PASSWORD}@localhost:1/db", ["cannot use the database", "***"]),
    ("::nonsense::", ["not a database URL"]),
])
def test_bad_storage_is_one_line_without_the_password(tmp_path, url, words):
    result = digitnet("sweep", *SMALL, "--storage", url, "--out", str(tmp_path))
    assert_one_error_line(result, *words)
    assert PASSWORD not in result.stdout + result.stderr


def test_a_database_that_never_answers_is_given_up_on(tmp_path):
    """A port that accepts connections but never speaks: the connect timeout ends the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result = digitnet("sweep", *SMALL, "--storage",
                          f"postgresql://me:{PASSWORD}@127.0.0.1:{port}/db",
                          "--out", str(tmp_path), timeout=60)
    assert_one_error_line(result, "cannot use the database")
    assert PASSWORD not in result.stdout + result.stderr


# -- workers on a journal file (real MNIST) ---------------------------------------------------


@pytest.mark.mnist
def test_two_workers_share_a_journal_and_train_each_point_once(tmp_path, mnist_dir):
    out = tmp_path / "sweep"
    result = digitnet("sweep", *SMALL, "--workers", "2", "--out", str(out), "--json",
                      data=mnist_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] == summary["points"] == 6
    assert [(r["hidden"], r["seeds"]) for r in summary["rows"]] == [(2, 2), (4, 2), (8, 2)]
    assert summary["rows"][2]["test_mean"] > 0.8  # 8 hidden units, one epoch
    assert (out / "sweep.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "sweep.json").read_text())["complete"] == 6
    study = journal_study(out)
    assert_each_point_once(study, 6)
    # running it again resumes a finished grid: nothing is trained again
    before = len(study.get_trials())
    again = digitnet("sweep", *SMALL, "--workers", "2", "--out", str(out), "--json",
                     data=mnist_dir)
    assert again.returncode == 0, again.stderr
    assert len(journal_study(out).get_trials()) == before
    # the same study asked for another grid is refused, and keeps its trials
    other = digitnet("sweep", *SMALL[:-2], "--hidden", "2,16", "--out", str(out),
                     data=mnist_dir)
    assert_one_error_line(other, "digitnet-grid", "hidden 2,4,8", "hidden 2,16")
    assert len(journal_study(out).get_trials()) == before


@pytest.mark.mnist
def test_a_worker_killed_mid_trial_is_retried_when_run_again(tmp_path, mnist_dir):
    out = tmp_path / "sweep"
    args = ["sweep", *SMALL[:-4], "--epochs", "3", "--val-size", "1000", "--heartbeat", "1",
            "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(SRC), "DIGITNET_DATA": str(mnist_dir)}
    worker = subprocess.Popen([sys.executable, "-m", "digitnet.cli", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = None
    try:
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
            if not (out / "study.journal").exists():
                continue
            try:
                trials = journal_study(out).get_trials()
            except KeyError:  # the study is not created yet
                continue
            running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
            if running:  # its first epoch is reported, two are to come
                os.kill(worker.pid, signal.SIGKILL)
                killed = running[0].number
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
    assert killed is not None, "the worker finished before it could be killed"
    assert worker.returncode == -signal.SIGKILL
    result = digitnet(*args, "--json", data=mnist_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["complete"] == 6
    study = journal_study(out)
    assert_each_point_once(study, 6)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[killed].state.name == "FAIL"
    retried = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == trials[killed].params


@pytest.mark.mnist
def test_search_prints_a_train_command(tmp_path, mnist_dir):
    from digitnet.training import make_config

    result = digitnet("sweep", "--search", "--hidden", "8", "--trials", "3", "--epochs", "1",
                      "--val-size", "1000", "--out", str(tmp_path), "--json", data=mnist_dir)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert sum(found["trials"].values()) == 3
    best = found["best"]
    assert best["command"].startswith("digitnet train --preset default --hidden 8 --layers 1")
    assert {"lr", "batch_size", "l2", "schedule"} <= set(best["options"])
    assert best["options"]["epochs"] == 1  # fixed on the command line, so not searched
    make_config("default", **best["options"])  # the settings are valid training options
    text = digitnet("sweep", "--search", "--hidden", "8", "--trials", "3", "--epochs", "1",
                    "--val-size", "1000", "--out", str(tmp_path), data=mnist_dir)
    assert best["command"] in text.stdout.replace("\n", "")


@pytest.mark.mnist
def test_report_shows_the_sweep_figure(tmp_path, mnist_dir):
    import numpy as np

    from digitnet import modelfile, training

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    model = training.train(training.make_config(hidden=4, epochs=1, val_size=50), images,
                           rng.integers(0, 10, 300))
    modelfile.save(model, tmp_path / "m.safetensors")
    rows = [{"hidden": h, "layers": 1, "seeds": 1, "test_mean": 0.9, "test_sd": 0.0,
             "train_mean": 0.9} for h in (2, 4)]
    sweepresults.write_figure(rows, tmp_path / "sweep" / "sweep.png")
    result = digitnet("report", str(tmp_path / "m.safetensors"), "--sweep",
                      str(tmp_path / "sweep"), "--out", str(tmp_path / "r"), data=mnist_dir)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r" / "sweep.png").exists()
    assert "Accuracy against the size of the hidden layer" in (
        tmp_path / "r" / "index.html").read_text()
    missing = digitnet("report", str(tmp_path / "m.safetensors"), "--sweep", str(tmp_path),
                       "--out", str(tmp_path / "r2"), data=mnist_dir)
    assert_one_error_line(missing, "--sweep", "sweep.png")


# -- a real PostgreSQL server -----------------------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return found[-1].parent


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a Unix socket, with a password; yields its URL."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="digitnet-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    (root / "pw").write_text(PASSWORD)
    os.chmod(root / "pw", 0o644)
    data = root / "data"

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "sweeper", "--auth=scram-sha-256",
            f"--pwfile={root / 'pw'}")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-k {root} -c listen_addresses=''", "start")
        yield f"postgresql://sweeper:{PASSWORD}@/postgres?host={root}"
    finally:
        if data.exists():
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                            "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.mnist
def test_two_workers_share_a_postgresql_study(tmp_path, mnist_dir, postgres):
    result = digitnet("sweep", *SMALL, "--workers", "2", "--storage", postgres, "--study",
                      "pg-grid", "--out", str(tmp_path), "--json", data=mnist_dir)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] == 6 and "***" in summary["storage"]
    study = optuna.load_study(study_name="pg-grid", storage=postgres)
    assert_each_point_once(study, 6)
    # a second machine running the same command joins the finished study: nothing to train
    again = digitnet("sweep", *SMALL, "--storage", postgres, "--study", "pg-grid",
                     "--out", str(tmp_path / "second"), "--json", data=mnist_dir)
    assert again.returncode == 0, again.stderr
    assert len(optuna.load_study(study_name="pg-grid", storage=postgres).trials) == len(
        study.trials)


def test_a_wrong_database_password_is_not_shown(tmp_path, postgres):
    wrong = postgres.replace(PASSWORD, "Not-" + PASSWORD)
    result = digitnet("sweep", *SMALL, "--storage", wrong, "--out", str(tmp_path))
    assert_one_error_line(result, "cannot use the database", "password authentication")
    assert PASSWORD not in result.stdout + result.stderr
