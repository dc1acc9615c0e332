"""Export: standard-size crops, ms-swift JSONL variants, COCO, YOLO, Label Studio, ODVG.

Entry point: :func:`export_dataset` (see :mod:`autolabel.export.core` for the folder layout);
options are the ``export`` config section (:class:`autolabel.config.ExportConfig`). Formats
live in a registry (:mod:`autolabel.export.registry`).
"""

from __future__ import annotations

from autolabel.export.core import ExportResult, export_dataset, read_latest
from autolabel.export.registry import (
    ExportFormat,
    format_names,
    formats_help,
    parse_formats,
    register_format,
)

__all__ = [
    "ExportFormat",
    "ExportResult",
    "export_dataset",
    "format_names",
    "formats_help",
    "parse_formats",
    "read_latest",
    "register_format",
]
