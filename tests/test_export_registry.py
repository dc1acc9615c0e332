"""Export format registry and the pure export plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autolabel.config import ExportConfig
from autolabel.errors import InputError
from autolabel.export import export_dataset, registry
from autolabel.export.plan import check_version, image_names, plan_export
from autolabel.types import Label

BUILTIN = (
    "swift",
    "swift-messages",
    "swift-grounding",
    "qwen-vl-grounding",
    "coco",
    "yolo",
    "labelstudio",
    "odvg",
)


@pytest.fixture
def fresh_registry(monkeypatch):
    """A copy of the registry, so a test's registrations do not leak."""
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    return registry


def _csv_writer(ctx: registry.FormatContext, sink: registry.FileSink) -> None:
    lines = ["proposal_id,caption"] + [f"{it.label.proposal_id},{it.caption}" for it in ctx.items]
    sink.text("labels.csv", "\n".join(lines) + "\n")


def test_builtin_formats_in_canonical_order_and_only_crop_formats_need_crops():
    assert registry.format_names() == BUILTIN
    assert registry.needs_crops(["swift", "coco"]) and registry.needs_crops(["swift-messages"])
    assert not registry.needs_crops([n for n in BUILTIN if not n.startswith("swift")])
    assert registry.parse_formats("coco, swift") == ("swift", "coco")
    assert registry.parse_formats("all") == BUILTIN
    # the old name of the ms-swift grounding rows still works, without a second file
    assert registry.parse_formats("swift-objects,swift-grounding") == ("swift-grounding",)


@pytest.mark.parametrize(
    "value, match",
    [("", "expected at least one of swift"), ("coco,voc", "got voc"), (["x", "y"], "got x, y")],
)
def test_parse_formats_rejects_unknown_names(value, match):
    with pytest.raises(InputError, match=match):
        registry.parse_formats(value)


@pytest.mark.parametrize("name", ["", "all", "a,b"])
def test_register_format_rejects_unusable_names(fresh_registry, name):
    with pytest.raises(InputError, match="format name"):
        fresh_registry.register_format(registry.ExportFormat(name, False, _csv_writer, "x"))


def test_a_registered_format_is_parsed_helped_and_written_by_export(fresh_registry, workspace):
    fresh_registry.register_format(
        registry.ExportFormat("csv", False, _csv_writer, "one CSV row per label")
    )
    assert fresh_registry.format_names() == (*BUILTIN, "csv")  # built-ins stay
    assert fresh_registry.parse_formats("csv,coco") == ("coco", "csv")
    assert "csv (one CSV row per label)" in fresh_registry.formats_help()
    res = export_dataset(workspace, workspace.path.parent / "out", ExportConfig(formats=["csv"]))
    assert (res.path / "labels.csv").read_text() == "proposal_id,caption\n"
    assert not (res.path / "crops").exists()  # csv does not need crops
    summary = json.loads((res.path / "export.json").read_text())
    assert summary["formats"] == ["csv"] and "labels.csv" in summary["files"]


def test_cli_help_lists_every_registered_format():
    out = subprocess.run(
        [sys.executable, "-m", "autolabel.cli", "export", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())},
    )
    assert out.returncode == 0, out.stderr
    text = "".join(out.stdout.split())  # the help is wrapped (also at hyphens)
    for fmt in registry.REGISTRY.values():
        assert "".join(f"{fmt.name} ({fmt.description})".split()) in text


def _label(pid: int, image_id: int, path: str, box, *, w: int = 800, h: int = 600) -> Label:
    return Label(pid, image_id, path, None, w, h, tuple(box), "red box", None, 0.9,
                 "auto", "auto", 1, None, None)  # fmt: skip


def _plan(labels, **options):
    return plan_export(
        labels, {}, ExportConfig(**options),
        formats=("swift",), want_crops=True, version="v3",
        crops_dir=Path("/tmp/x/.tmp/crops"), final=Path("/data/out/v3"),
        max_pixels=1000, max_side=100,
    )  # fmt: skip


def test_plan_names_sizes_and_skips_without_touching_disk():
    labels = [
        _label(7, 2, "/p/a.jpg", (10, 10, 410, 310)),
        _label(5, 2, "/p/a.jpg", (0, 0, 100, 50)),  # long side 100 < min_size 224
        _label(9, 3, "/q/a.jpg", (900, 700, 950, 750)),  # outside the 800x600 image
        _label(4, 1, "/p/b c.png", (0, 0, 300, 300)),
    ]
    plan = _plan(labels)
    assert [p.image_id for p in plan.images] == [1, 2]  # image 3 has no item left
    b, a = plan.images
    assert b.name == "b_c" and a.name == "a-2"  # unsafe chars replaced, colliding stems get ids
    assert [it.label.proposal_id for it in a.items] == [5, 7]  # by proposal id
    assert [it.status for it in a.items] == ["too-small", "ok"]
    assert [it.crop for it in a.items] == [None, "crops/a-2_448_v3_2.png"]
    (job,) = a.task.jobs
    assert job.out_path == "/tmp/x/.tmp/crops/a-2_448_v3_2.png" and job.out_size == (448, 336)
    assert (a.task.max_pixels, a.task.max_side) == (1000, 100)
    assert [r["proposal_id"] for r in plan.too_small] == [5]
    assert [(r["proposal_id"], r["reason"]) for r in plan.skipped] == [(9, "empty-box")]


def test_plan_absolute_paths_point_into_the_final_folder():
    plan = _plan([_label(1, 1, "/p/a.jpg", (0, 0, 400, 400))], absolute_paths=True)
    assert plan.images[0].items[0].crop == "/data/out/v3/crops/a_448_v3.png"


def test_image_names_are_unique_and_safe():
    labels = [
        _label(1, 1, "/x/..hidden.jpg", (0, 0, 1, 1)),
        _label(2, 2, "/y/ö ß.jpg", (0, 0, 1, 1)),
    ]
    assert image_names(labels) == {1: "hidden", 2: "ö_ß"}


@pytest.mark.parametrize("version", ["../x", ".v1", "a/b", "x" * 65])
def test_check_version_refuses_unsafe_folder_names(version):
    with pytest.raises(InputError, match="version: expected letters"):
        check_version(version)


def test_default_export_formats_are_the_builtin_formats():
    from autolabel.constants import DEFAULT_EXPORT_FORMATS
    from autolabel.export.registry import format_names

    assert tuple(DEFAULT_EXPORT_FORMATS) == format_names()
