"""Segments solved in parallel processes (`--workers N`): the segment models are independent CP-SAT problems, so N
processes prove N of them at once, each with a single-threaded, deterministic CP-SAT search.

Why the answer does not depend on which process finishes first: the search hands segments out in waves (`waves`):
the lone Einsums, then the fused runs ending at the same Einsum, at most `BATCH` at a time. Every segment of a wave
gets its cut-off and its share of the budget from the results of the waves before it, and the results are taken
back in the search's order once the whole wave is done. So with deterministic limits the same instance gives the
same answer with 2 processes or 16, on a quiet machine or a loaded one. A run ending at Einsum j is cut off by the
best cost of the Einsums before it, which only runs ending before j decide: those are all known when its wave
starts. What a wave gives up is the cut-offs its members would give each other (the one-process search solves
shorter runs first); any cut-off computed from valid mappings is sound (docs/solver-soundness.md).

Why a fork server: the parent may have run CP-SAT (and its threads) before; a plain fork could copy a lock held by
one of them. The server is started once, with the solver's modules imported, and forks the workers. Workers ignore
Ctrl-C (the parent owns it, cli/solve_cmd.py) and are killed when the search is interrupted. Segment-level events
(model sizes, incumbents, bounds) come back through a queue and are emitted by the parent, in its own thread.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import queue
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable, Optional

#: segments handed out at once at most; fixed (not the process count) so that the answer does not depend on
#: --workers, up to this many processes
BATCH = 16
#: how often the parent looks at the event queue and at Ctrl-C while segments are running (seconds)
POLL_S = 0.05


def waves(keys):
    """The search's plan keys (solver/plans.py order) in waves: lone Einsums, then runs by their last Einsum; each
    cut into pieces of at most BATCH."""
    wave: list = []
    for key in keys:
        group = None if key[2] is None else key[1]
        if wave and (len(wave) == BATCH or (None if wave[-1][2] is None else wave[-1][1]) != group):
            yield wave
            wave = []
        wave.append(key)
    if wave:
        yield wave


def default_workers() -> int:
    """The CPUs this process may run on (a container's cgroup share is not seen: os.sched_getaffinity)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:   # not on Linux
        return max(os.cpu_count() or 1, 1)


def available() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


_EVENTS = None          # in a worker: the queue back to the parent
_INSTANCES: dict = {}   # in a worker: unpickled instances by their key (one search sends the same one many times)


def _init_worker(events) -> None:
    global _EVENTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _EVENTS = events


def _instance(key: str, blob: bytes):
    inst = _INSTANCES.get(key)
    if inst is None:
        _INSTANCES.clear()
        inst = _INSTANCES[key] = pickle.loads(blob)
    return inst


def _solve_task(key: str, blob: bytes, tag, plan, components, seconds, seed, cutoff, unit, det_seconds,
                build, cpsat_workers):
    """One segment solve in a worker: solver.segment_solve.solve_segment, its events sent back tagged."""
    from .segment_solve import solve_segment
    inst = _instance(key, blob)

    def send(kind, *payload):
        try:
            _EVENTS.put((tag, kind, payload))
        except (OSError, ValueError):   # the parent has gone: nobody to tell
            pass
    return solve_segment(inst, plan, components, seconds, cpsat_workers, seed,
                         on_solution=lambda value, bound, wall, det: send("solution", value, bound, wall, det),
                         on_bound=lambda bound: send("bound", bound), cutoff=cutoff,
                         on_model=lambda model, size: send("model", size), energy_unit=unit,
                         det_seconds=det_seconds, build=build)


class SegmentPool:
    """A pool of worker processes, kept across searches in one process (tests and variants run many)."""

    def __init__(self, processes: int):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["mapsolve.solver.segment_solve", "mapsolve.solver.parallel"])
        self.processes = processes
        self.events = ctx.Queue()
        self.executor = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init_worker,
                                            initargs=(self.events,))

    def submit(self, *args) -> Future:
        return self.executor.submit(_solve_task, *args)

    def drain(self, handle: Callable[[int, str, tuple], None]) -> None:
        """Hand every queued event to `handle(tag, kind, payload)`."""
        while True:
            try:
                tag, kind, payload = self.events.get_nowait()
            except queue.Empty:
                return
            handle(tag, kind, payload)

    def kill(self) -> None:
        """Stop every worker at once (an interrupted search does not wait for its segments)."""
        procs = list((getattr(self.executor, "_processes", None) or {}).values())
        for p in procs:
            try:
                p.kill()
            except (OSError, AttributeError):
                pass
        for p in procs:
            p.join(timeout=5)
        # joined, not left to the interpreter's exit: concurrent.futures' exit hook writes to the manager thread's
        # wake-up pipe, which a shutdown(wait=False) may have closed under it (a traceback at exit, seen here)
        self.executor.shutdown(wait=True, cancel_futures=True)


_POOL: Optional[SegmentPool] = None
_BATCHES = itertools.count()


def next_batch() -> int:
    """A number no earlier batch of this process had (tags events, see solver/search.py in_workers)."""
    return next(_BATCHES)


def pool(processes: int) -> SegmentPool:
    global _POOL
    if _POOL is None or _POOL.processes != processes:
        if _POOL is not None:
            _POOL.executor.shutdown(wait=True)
        _POOL = SegmentPool(processes)
    return _POOL


def discard() -> None:
    """Forget a pool whose workers were killed."""
    global _POOL
    if _POOL is not None:
        _POOL.kill()
    _POOL = None


def run_batch(processes: int, tasks: list[tuple], handle: Callable[[int, str, tuple], None],
              interrupted: Callable[[], bool]) -> dict[int, object]:
    """Solve `tasks` (each the arguments of `_solve_task` with its tag third) in the pool; events go to `handle` as
    they come. Returns tag -> SegmentResult for the tasks that finished; on an interrupt the others are dropped and
    the pool is killed. A worker's exception (UnitTooFine, a bug) is raised here once the batch has stopped."""
    p = pool(processes)
    # Events come back on one queue shared by every batch of the pool's life, and a worker's queue feeder may
    # deliver a solve's last events after its result: tagged with this batch, a late event of an earlier batch (or
    # an earlier search in this process) is recognised and dropped, never handed on as this batch's tag.
    batch = next_batch()
    futures = {p.submit(*t[:2], (batch, t[2]), *t[3:]): t[2] for t in tasks}

    def ours(tag, kind, payload):
        if isinstance(tag, tuple) and tag[0] == batch:
            handle(tag[1], kind, payload)
    done: dict[int, object] = {}
    pending = set(futures)
    error = None
    try:
        while pending:
            finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            p.drain(ours)
            for f in finished:
                try:
                    done[futures[f]] = f.result()
                except Exception as exc:   # noqa: BLE001  re-raised below, after the rest stopped
                    error = error or exc
            if interrupted() or error is not None:
                if pending:
                    discard()
                break
        p.drain(ours)
    except BaseException:
        discard()
        raise
    if error is not None:
        raise error
    return done
