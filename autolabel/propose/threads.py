"""Keep torch's CPU thread pool from fighting the threads that run beside it.

Why: torch sizes its intra-op pool to the machine's cores and its workers spin while they
wait for each other. When propose's loader threads (decoding JPEGs, resizing) or other
processes use the same cores, the pool oversubscribes them and every forward waits on a
descheduled worker: on a 2-core machine under load the tiny-model propose test went from
1.5 s to 122 s. Giving the model ``cores - loader threads`` threads (at least one) keeps
the pool on free cores; the loaders are mostly in C code that releases the GIL.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def torch_threads_beside(workers: int, *, cpus: int | None = None) -> int:
    """How many intra-op threads torch should use next to ``workers`` busy threads.

    Args:
        workers: threads of this process that stay busy while the model runs.
        cpus: CPU cores this process may use (default: its affinity mask, else
            ``os.cpu_count()``).

    Returns:
        ``max(1, cpus - workers)``.
    """
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not on Linux
            cpus = os.cpu_count() or 1
    return max(1, int(cpus) - max(0, int(workers)))


@contextmanager
def limit_torch_threads(n: int) -> Iterator[int | None]:
    """Cap torch's intra-op threads at ``n`` inside the block, then restore the old value.

    Only lowers the count (an ``OMP_NUM_THREADS``/``torch.set_num_threads`` choice that is
    already smaller stays), and does nothing when torch has not been imported: a detector
    without torch does not pay for importing it.

    Args:
        n: the most threads torch may use (values below 1 count as 1).

    Yields:
        The thread count in effect inside the block, or None when torch is not loaded.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield None
        return
    before = torch.get_num_threads()
    inside = min(before, max(1, int(n)))
    if inside != before:
        torch.set_num_threads(inside)
    try:
        yield inside
    finally:
        if inside != before:
            torch.set_num_threads(before)
