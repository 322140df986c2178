import threading

import pytest

from pipeline.errors import MmfeatError
from pipeline.extractors.runtime import loader_context


def test_decode_workers_fork_only_from_a_single_threaded_process(monkeypatch):
    monkeypatch.delenv("MMFEAT_MP_START", raising=False)
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and t.name != "tqdm_monitor"]
    assert loader_context().get_start_method() == ("forkserver" if others else "fork")
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, name="orchestrator-loop")
    busy.start()
    try:
        assert loader_context().get_start_method() == "forkserver"
    finally:
        stop.set()
        busy.join()
    monkeypatch.setenv("MMFEAT_MP_START", "spawn")
    assert loader_context().get_start_method() == "spawn"
    monkeypatch.setenv("MMFEAT_MP_START", "threads")
    with pytest.raises(MmfeatError, match="auto, fork, forkserver or spawn"):
        loader_context()
