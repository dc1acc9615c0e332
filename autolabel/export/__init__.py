"""Export: standard-size crops, ms-swift JSONL variants, COCO, YOLO, Label Studio, ODVG.

Entry point: :func:`export_dataset` (see :mod:`autolabel.export.core` for the folder layout).
"""

from __future__ import annotations

from autolabel.export.core import (
    ExportOptions,
    ExportResult,
    export_dataset,
    parse_formats,
    read_latest,
)
from autolabel.export.formats import FORMATS

__all__ = [
    "FORMATS",
    "ExportOptions",
    "ExportResult",
    "export_dataset",
    "parse_formats",
    "read_latest",
]
