"""numba's on-disk cache is used only for the kernels' sources as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("numba")

from digitnet.fast import numba_engine  # noqa: E402


def _cache(folder: Path) -> Path:
    folder.mkdir()
    index = folder / "kernels._nb_train-1.py311.nbi"
    index.write_bytes(b"index")
    (folder / "kernels._nb_train-1.py311.1.nbc").write_bytes(b"code")
    (folder / "sparse._nb_forward-9.py311.1.nbc").write_bytes(b"inlined")
    return index


def test_a_cache_without_a_stamp_is_cold_and_its_compiled_files_are_removed(tmp_path):
    index = _cache(tmp_path / "cache")
    (tmp_path / "cache" / "notes.txt").write_text("kept")
    assert not numba_engine._cache_matches(index, "abc")
    assert sorted(p.name for p in index.parent.iterdir()) == ["notes.txt"]


def test_a_cache_stamped_with_other_sources_is_cold(tmp_path):
    index = _cache(tmp_path / "cache")
    (index.parent / numba_engine.STAMP).write_text("old sources")
    assert not numba_engine._cache_matches(index, "new sources")
    assert not index.exists()


def test_a_cache_stamped_with_these_sources_is_warm_and_kept(tmp_path):
    index = _cache(tmp_path / "cache")
    (index.parent / numba_engine.STAMP).write_text("these")
    assert numba_engine._cache_matches(index, "these")
    assert len(list(index.parent.glob("*.nb[ic]"))) == 3


def test_the_digest_changes_with_any_source_of_the_package(tmp_path):
    (tmp_path / "kernels.py").write_text("x = 1\n")
    (tmp_path / "sparse.py").write_text("y = 2\n")
    before = numba_engine.sources_digest(tmp_path)
    (tmp_path / "sparse.py").write_text("y = 3\n")
    assert numba_engine.sources_digest(tmp_path) != before
    assert numba_engine.sources_digest(tmp_path) == numba_engine.sources_digest(tmp_path)


def test_the_compiled_kernels_leave_a_stamp_of_the_sources_beside_the_cache():
    from digitnet.fast import kernels

    numba_engine.compiled()
    index = Path(kernels._nb_train._cache._cache_file._index_path)
    assert index.exists()
    assert (index.parent / numba_engine.STAMP).read_text() == numba_engine.sources_digest()


def _fake_kernels(index: Path):
    from types import SimpleNamespace

    cache_file = SimpleNamespace(_index_path=str(index))
    return SimpleNamespace(_nb_train=SimpleNamespace(_cache=SimpleNamespace(
        _cache_file=cache_file)))


def test_one_process_at_a_time_checks_and_fills_the_cache(tmp_path):
    import threading

    kernels = _fake_kernels(tmp_path / "cache" / "kernels._nb_train-1.py311.nbi")
    events: list[str] = []
    first_inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with numba_engine._cache_lock(kernels):
            events.append("first in")
            first_inside.set()
            release.wait(10)
            events.append("first out")

    def second() -> None:
        first_inside.wait(10)
        with numba_engine._cache_lock(kernels):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_inside.wait(10)
    threading.Timer(0.2, release.set).start()
    for thread in threads:
        thread.join(20)
    assert events == ["first in", "first out", "second in"]
