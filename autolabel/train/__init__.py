"""Fine-tuning the detector on seed and reviewed boxes (the learning loop).

Heavy imports (torch, transformers) happen inside functions; importing this package is light.
"""

from __future__ import annotations

from autolabel.detect.versions import latest_version_dir, list_versions, resolve_version

__all__ = ["latest_version_dir", "list_versions", "resolve_version"]
