"""Memory figures of a process from ``/proc/<pid>/status`` (Linux), shared by the benchmarks."""

from __future__ import annotations


def status_mib(key: str, pid: int | str = "self") -> float | None:
    """``key`` of process ``pid`` in MiB (``VmRSS``: resident now, ``VmHWM``: its peak);
    None where there is no such line (no ``/proc``, the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
