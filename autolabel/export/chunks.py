"""Planning an export chunk by chunk: what both engines (local, Ray) share.

A :class:`ChunkPlanner` holds everything that planning needs besides the labels (options,
seed captions, the file names that differ from their stems across the whole export), so any chunk of
whole images can be planned on its own, here or in a Ray read task, with the same result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolabel.export.plan import ExportPlan, SeedCaptions, image_stem, plan_export
from autolabel.export.registry import needs_crops
from autolabel.types import Label

if TYPE_CHECKING:
    from autolabel.config import ExportConfig


@dataclass(frozen=True)
class ChunkPlanner:
    """Everything needed to plan one chunk of labels; picklable, so Ray read tasks plan too.

    Attributes:
        options: the export section.
        seeds: seed captions per image id.
        renamed: image id -> file name, for the images whose name is not their bare stem
            (:func:`autolabel.export.plan.unique_names` over all selected images).
        formats: the formats (canonical order).
        version: the version name.
        crops_dir: folder the crops are written to (the temporary version's ``crops``).
        final: the version folder once renamed in.
        max_pixels: decompression-bomb guard.
        max_side: longest-side guard.
        bundle_dir: folder the originals' bundle copies go to (the temporary version's
            ``images``).
        phrase_captions: ``{phrase: the one seed caption it was derived from}``.
    """

    options: ExportConfig
    seeds: SeedCaptions
    renamed: Mapping[int, str]
    formats: tuple[str, ...]
    version: str
    crops_dir: Path
    final: Path
    max_pixels: int
    max_side: int
    bundle_dir: Path | None = None
    phrase_captions: Mapping[str, str] = field(default_factory=dict)

    def names(self, labels: Sequence[Label]) -> dict[int, str]:
        """File-name stem per image id, unique over the whole export."""
        out: dict[int, str] = {}
        for lb in labels:
            if lb.image_id not in out:
                name = self.renamed.get(lb.image_id)
                out[lb.image_id] = name if name is not None else image_stem(lb.image_path)
        return out

    def plan(self, labels: Sequence[Label]) -> ExportPlan:
        """The plan of one chunk of labels (whole images)."""
        return plan_export(
            labels, self.seeds, self.options,
            formats=self.formats, want_crops=needs_crops(self.formats), version=self.version,
            crops_dir=self.crops_dir, final=self.final,
            max_pixels=self.max_pixels, max_side=self.max_side,
            bundle_dir=self.bundle_dir, names=self.names(labels),
            phrase_captions=self.phrase_captions,
        )  # fmt: skip


Event = tuple[str, Any, Any]
"""``("rows", too_small rows, skip rows)`` of a planned chunk, or ``("image", ImagePlan,
TaskResult)`` of one cut original; an engine yields them in image-id order."""
