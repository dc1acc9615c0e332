"""A deterministic train/val split grouped by source image, shared by every format."""

from __future__ import annotations

from tests.support import consumers as fd


def _splits(version) -> dict[str, str]:
    """source path -> split, from the manifest (one split per source image)."""
    out: dict[str, str] = {}
    for row in fd.read_jsonl(next(iter(sorted(version.rglob("manifest.jsonl"))))):
        split = row.get("split")
        assert split in ("train", "val"), f"manifest row without a train/val split: {row}"
        assert out.setdefault(row["source_path"], split) == split, "an image in both splits"
    return out


def test_split_is_grouped_by_image_deterministic_and_non_trivial(exported, tmp_path):
    splits = _splits(exported.version)
    assert set(splits) == set(exported.by_path)
    assert {"train", "val"} == set(splits.values())
    res = fd.run_cli(
        "export", str(exported.workspace), "--out", str(tmp_path / "again"), "--formats", "all",
        "--min-size", "32", "--workers", "1", "--quiet",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    again = tmp_path / "again" / (tmp_path / "again" / "LATEST").read_text().strip()
    assert _splits(again) == splits
