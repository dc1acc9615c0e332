"""The Ray engine (Ray Data, actor pool holding the tiny Grounding DINO) on a local Ray.

One module on purpose: Ray start-up is slow on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autolabel import propose
from autolabel.store import Workspace
from autolabel.store import runs as store_runs
from tests.support.propose import assert_same, by_path, make_images, register, settings

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_engine_equals_local_engine_and_resumes(tmp_path: Path, tiny_models, local_ray):
    folder = tmp_path / "imgs"
    paths = make_images(folder, 36, seed=7)
    (folder / "broken.png").write_bytes(paths[0].read_bytes()[:120])
    all_paths = [*paths, folder / "broken.png"]

    with Workspace.create(tmp_path / "local") as ws:
        register(ws, all_paths)
        s = propose.run_propose(ws, settings(tiny_models, batch_size=4))
        assert (s.images, s.errors) == (36, 1)
        local = by_path(ws, s.key)

    ray_settings = settings(
        tiny_models, batch_size=4, engine="ray", ray_actors=1, ray_cpus_per_actor=0.5
    )
    with Workspace.create(tmp_path / "ray") as ws:
        register(ws, all_paths)
        # the local engine stops early (--limit), Ray finishes: one run key across engines,
        # so the resume semantics are the same (one Ray job: actor start-up is slow here)
        first = propose.run_propose(ws, ray_settings.replace(engine="local", limit=12))
        assert first.images + first.errors == 12
        second = propose.run_propose(ws, ray_settings)
        assert second.key == first.key and second.pending == 25
        assert first.images + second.images == 36
        assert first.errors + second.errors == 1
        assert store_runs.count_pending_images(ws, second.key) == 0
        errs = store_runs.run_errors(ws, second.key)
        assert [e.split(":")[0] for e in errs.values()] == ["truncated"]
        via_ray = by_path(ws, second.key)
        n_rows = ws.conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0]
        ray_run = store_runs.list_runs(ws)[-1]
        assert ray_run["finished_at"] is not None and ray_run["n_images"] == second.images
    assert sum(map(len, local.values())) == n_rows > 0
    assert_same(local, via_ray)
