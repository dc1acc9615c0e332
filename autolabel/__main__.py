"""``python -m autolabel``: the same CLI as the ``autolabel`` console script."""

from __future__ import annotations

from autolabel.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    main()
