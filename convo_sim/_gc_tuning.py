"""The garbage collector's young generation, sized for a rollout run while it runs.

CPython collects its young generation after every 700 (3.13: 2000) net
new container objects. A dialogue waiting for a model keeps ~200 of them
alive (tasks, cancel scopes, streams, the await chain, its transcript), so
with hundreds of dialogues in flight nearly everything a young collection
examines is still alive: it is promoted, examined again, and every ~100
young collections a full collection re-scans the whole heap. Measured at
50 ms per model call: 20-30% of the client's CPU at 256 dialogues, 60% at
10,000 (benchmarks/README.md). While a run is in progress its young
generation is therefore sized for the dialogues in flight, and the
thresholds are restored when the last overlapping run ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["GC_MAX_THRESHOLD", "GC_OBJECTS_PER_DIALOGUE", "collector_sized_for"]

GC_OBJECTS_PER_DIALOGUE = 200
"""Young-generation room per dialogue slot while a run tunes the collector.

About what one dialogue over an LLM keeps alive while it waits for a model
(measured: 190-260 GC-tracked objects)."""
GC_MAX_THRESHOLD = 1_000_000
"""The largest young-generation threshold a run sets (bounds one collection's pause)."""

_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] | None = None
_gc_ours: tuple[int, int, int] | None = None


@contextmanager
def collector_sized_for(concurrency: int) -> Iterator[None]:
    """Raise the young-generation threshold for `concurrency` dialogues while inside.

    Runs may nest or overlap (two `open_rollouts` in one event loop, or
    in two threads): the first to start saves the thresholds, each raises
    them to what it needs, and the last to end restores them, unless the
    program changed them in between (then the program's setting stays).
    """
    global _gc_runs, _gc_saved, _gc_ours
    want = min(GC_OBJECTS_PER_DIALOGUE * concurrency, GC_MAX_THRESHOLD)
    with _gc_lock:
        current = gc.get_threshold()
        if _gc_runs == 0:
            _gc_saved = _gc_ours = current
        if current == _gc_ours and want > current[0]:
            gc.set_threshold(want, current[1], current[2])
            _gc_ours = gc.get_threshold()
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                if _gc_saved is not None and gc.get_threshold() == _gc_ours:
                    gc.set_threshold(*_gc_saved)
                _gc_saved = _gc_ours = None
