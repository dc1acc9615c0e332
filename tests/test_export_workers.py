"""Crop worker processes keep to one thread each (no oversubscription beside other workers)."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from autolabel.export.crops import pin_threads


def _threads() -> tuple[str | None, int | None]:
    import sys

    torch = sys.modules.get("torch")
    return os.environ.get("OMP_NUM_THREADS"), None if torch is None else torch.get_num_threads()


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_pin_threads_limits_inherited_thread_pools(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            assert pool.submit(_threads).result() == ("4", 2)  # what a worker inherits
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=pin_threads) as pool:
            assert pool.submit(_threads).result() == ("1", 1)
    finally:
        torch.set_num_threads(before)
