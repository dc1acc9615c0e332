"""Torch's thread pool is pinned beside the loader threads while propose runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autolabel.propose.threads import limit_torch_threads, torch_threads_beside
from autolabel.types import Proposals
from tests.support.propose import make_bright_images, register


@pytest.mark.parametrize(
    ("workers", "cpus", "expected"), [(2, 2, 1), (0, 2, 2), (2, 16, 14), (4, 1, 1), (-1, 3, 3)]
)
def test_threads_beside_workers(workers, cpus, expected):
    assert torch_threads_beside(workers, cpus=cpus) == expected


def test_limit_lowers_then_restores_and_never_raises():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        with limit_torch_threads(1) as n:
            assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with limit_torch_threads(8) as n:  # a smaller choice already made stays
            assert n == 3 and torch.get_num_threads() == 3
        with pytest.raises(RuntimeError), limit_torch_threads(0):
            assert torch.get_num_threads() == 1
            raise RuntimeError("restored on errors too")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_limit_does_not_import_torch():
    code = (
        "import sys\n"
        "from autolabel.propose.threads import limit_torch_threads\n"
        "with limit_torch_threads(1) as n:\n"
        "    print(n, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "False"]


class _ThreadSpy:
    name = "spy"
    model_id = "test/spy"
    model_version = "spy-1"
    box_threshold = 0.1
    text_threshold = 0.1

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.seen: set[int] = set()

    def detect(self, images, prompts):
        self.seen.add(self.torch.get_num_threads())
        return [Proposals([[0, 0, 2, 2]], [0.5], ["x"]) for _ in images]


def test_local_run_pins_torch_threads_beside_its_loaders(workspace, tmp_path, monkeypatch):
    import os

    torch = pytest.importorskip("torch")
    from autolabel.propose import ProposeSettings, run_propose

    register(workspace, make_bright_images(tmp_path / "imgs", 6))
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        spy = _ThreadSpy()
        s = ProposeSettings.of("x", batch_size=2, workers=3, max_size=128)
        assert run_propose(workspace, s, detector=spy).images == 6
        assert spy.seen == {1}  # 4 cores - 3 loader threads
        assert torch.get_num_threads() == 4  # restored after the run
        spy = _ThreadSpy()
        run_propose(workspace, s.replace(workers=1, prompt="y"), detector=spy)
        assert spy.seen == {3}
    finally:
        torch.set_num_threads(before)
