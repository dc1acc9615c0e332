"""The Hugging Face hub, seen from an offline-capable tool: is it there at all?

One probe per process (:func:`hub_reachable`) decides whether a hub id may be downloaded;
when the hub does not answer, loaders use the local cache only and fail within seconds
instead of retrying for minutes. Imports nothing from :mod:`autolabel.detect`, so the loaders
(:mod:`autolabel.detect.base`) and the registry (``models pull``) can both use it.
"""

from __future__ import annotations

import os

HUB_PROBE_TIMEOUT = 3.0
"""Seconds the one hub probe waits before a load switches to offline mode."""

_HUB_REACHABLE: dict[str, bool] = {}


def hub_offline_env() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` asks for offline mode."""
    return any(
        os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no", "off")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_endpoint() -> str:
    """The Hugging Face hub address in use (``HF_ENDPOINT``, else the public hub)."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Probe the hub once per process (one HTTP HEAD, ``timeout`` seconds).

    Any HTTP answer (even an error status) counts as reachable; a refused or timed-out
    connection, or a DNS failure, does not. Without this, transformers retries for minutes
    before it gives up on an unreachable hub.
    """
    import urllib.error
    import urllib.request

    endpoint = hub_endpoint()
    if endpoint not in _HUB_REACHABLE:
        try:
            req = urllib.request.Request(endpoint, method="HEAD")
            with urllib.request.urlopen(req, timeout=timeout):
                pass
            ok = True
        except urllib.error.HTTPError:
            ok = True
        except (OSError, ValueError):  # URLError, timeout, refused, bad address
            ok = False
        _HUB_REACHABLE[endpoint] = ok
    return _HUB_REACHABLE[endpoint]
