"""The fine-tuning run's state and rules, without training a model.

- one "is this run resumable" rule: a partial folder resumes only with ``run.json`` and
  ``last.pt``; anything else is discarded;
- the state dataclass round-trips through a checkpoint dict and reads older ones;
- a resume compares the learning options only (runtime options and keys an older version
  stored do not block it);
- the finetune config section is the frozen option object and CLI flags go through it;
- torch threads are pinned while training and restored afterwards.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from autolabel.config import FinetuneConfig
from autolabel.detect import versions
from autolabel.errors import ConfigError, ConflictError
from autolabel.train.loop import _check_same_settings, fingerprint
from autolabel.train.state import (
    LAST_CHECKPOINT,
    RUN_FILE,
    TrainState,
    is_resumable,
    resumable_partial,
)


def make_partial(ws, files: tuple[str, ...], number: int = 1):
    partial = versions.models_dir(ws) / f"gdino-v{number}.partial"
    partial.mkdir(parents=True)
    for name in files:
        (partial / name).write_text("{}")
    return partial


@pytest.mark.parametrize(
    ("files", "resumable"),
    [
        ((), False),
        ((RUN_FILE,), False),  # killed before the first checkpoint
        ((LAST_CHECKPOINT,), False),  # no data snapshot to resume with
        ((RUN_FILE, LAST_CHECKPOINT), True),
    ],
)
def test_one_resumable_rule(tmp_path, files, resumable):
    partial = make_partial(tmp_path, files)
    assert is_resumable(partial) is resumable
    found = resumable_partial(tmp_path)
    assert found == (partial if resumable else None)
    assert partial.exists() is resumable  # an unresumable run is discarded
    assert versions.find_partial(tmp_path) == found


def test_restart_discards_a_resumable_run(tmp_path):
    partial = make_partial(tmp_path, (RUN_FILE, LAST_CHECKPOINT))
    assert resumable_partial(tmp_path, restart=True) is None
    assert not partial.exists()


def test_no_partial_run(tmp_path):
    assert resumable_partial(tmp_path) is None


def test_train_state_round_trip_and_old_checkpoints():
    state = TrainState(epoch=2, step=7, best_ap=0.5, history=[{"step": 1, "loss": 2.0}])
    assert TrainState.from_dict(state.to_dict()) == state
    # a checkpoint written before `evals`/`step_seconds` existed, with a key no longer used
    old = {"epoch": 1, "micro": 3, "step": 4, "done": False, "retired_key": 1}
    restored = TrainState.from_dict(old)
    assert (restored.epoch, restored.micro, restored.step) == (1, 3, 4)
    assert restored.evals == [] and restored.step_seconds == 0.0


def test_fingerprint_leaves_out_runtime_options():
    a = FinetuneConfig(device="cpu", checkpoint_every=5, threads=1, base="x")
    b = FinetuneConfig(device="cuda", checkpoint_every=0, threads=4, base="y")
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(a.model_copy(update={"lr": 1e-3}))
    assert {"device", "checkpoint_every", "threads", "base"}.isdisjoint(fingerprint(a))


def test_resume_check_compares_learning_options_and_base(tmp_path):
    opts = FinetuneConfig()
    # a run.json written by the older FinetuneOptions also stored text_threshold
    run = {"base": "m", "options": {**fingerprint(opts), "text_threshold": 0.3}}
    _check_same_settings(tmp_path, run, "m", opts)  # resumes
    with pytest.raises(ConflictError, match="differs in: base, lr"):
        _check_same_settings(tmp_path, run, "other", opts.model_copy(update={"lr": 1.0}))


def test_finetune_section_is_a_frozen_validated_option_object():
    opts = FinetuneConfig()
    with pytest.raises(ValidationError):
        opts.lr = 1.0
    with pytest.raises(ValidationError):
        FinetuneConfig(freeze="everything")
    with pytest.raises(ValidationError):
        FinetuneConfig(threads=0)


def test_cli_flags_are_validated_by_the_config_section(tmp_path):
    from autolabel.cli import app
    from autolabel.store import Workspace

    Workspace.create(tmp_path / "ws").close()
    out = CliRunner().invoke(app, ["finetune", str(tmp_path / "ws"), "--freeze", "all"])
    assert out.exit_code != 0
    assert isinstance(out.exception, ConfigError)
    assert "finetune.freeze" in str(out.exception)


@pytest.mark.parametrize(("threads", "expected"), [(None, "min"), (1, 1), (3, 3)])
def test_training_pins_torch_threads_and_restores_them(threads, expected):
    import torch

    from autolabel.train.trainer import DEFAULT_MAX_THREADS, pinned_threads

    before = torch.get_num_threads()
    with pinned_threads(threads) as n:
        inside = torch.get_num_threads()
    assert inside == n == (min(before, DEFAULT_MAX_THREADS) if expected == "min" else expected)
    assert torch.get_num_threads() == before


def test_run_json_of_a_new_run_stores_the_fingerprint(tmp_path):
    """The options written at the start are the ones a resume compares."""
    import numpy as np

    from autolabel.train import loop
    from autolabel.train.data import TrainingSet, TrainSample

    samples = [TrainSample(f"{i}.png", np.array([[0, 0, 4, 4]]), ("a",)) for i in range(3)]
    opts = FinetuneConfig(val_split=0.0, device="cpu")
    partial, run = loop._start_run(tmp_path, TrainingSet(samples, ["a"], {}), "m", opts, None)
    stored = json.loads((partial / RUN_FILE).read_text())
    assert stored["options"] == fingerprint(opts) == run["options"]
    assert partial.name == "gdino-v1.partial" and not is_resumable(partial)
