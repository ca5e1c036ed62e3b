"""Generation split across `accelerate launch` processes and gathered back in order.

    accelerate launch --num_processes 8 -m duo_unlearn.cli pairs --config pairs.yaml

Work is split in whole *chunks* (the batches one process would have run together), because
a batch's images depend bit for bit on which other images share it; so N processes give
exactly the single-process result, only N times sooner. Every process must call
``gather_objects`` (and ``generate`` under ``split_generation``) the same number of times in
the same order: they are collectives. Files are written by the main process only.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, TypeVar

T = TypeVar("T")

_SPLIT_GENERATION = False


def process_state():
    """accelerate's view of this process (index, count, device). ``ACCELERATE_USE_CPU`` is
    honoured as accelerate's own Accelerator does, so CPU ranks under a launcher form a gloo
    group instead of each believing it is alone."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def is_main_process() -> bool:
    return process_state().is_main_process


def shard(items: Sequence[T]) -> list[T]:
    """This process's contiguous share of ``items`` (the first processes take one more when
    the count does not divide); concatenating every process's share in rank order gives
    ``items`` back, which is what ``gather_objects`` does."""
    state = process_state()
    n, size, rank = len(items), state.num_processes, state.process_index
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return list(items[start : start + base + (rank < extra)])


def gather_objects(local: list[T]) -> list[T]:
    """Every process's ``local`` list concatenated in rank order, on every process (picklable
    objects: records, PIL images). Single process: ``local`` itself."""
    from accelerate.utils import gather_object

    if process_state().num_processes == 1:
        return list(local)
    return list(gather_object(list(local)))


def wait_for_everyone() -> None:
    """A barrier: e.g. before other processes read what the main process just wrote."""
    process_state().wait_for_everyone()


@contextlib.contextmanager
def split_generation() -> Iterator[None]:
    """Inside, ``sampling.generate`` shares its batches across processes and returns every
    image on every process. For code whose calls to ``generate`` every process makes in
    the same order (an attack's rendering); not for main-process-only code (validation)."""
    global _SPLIT_GENERATION
    previous, _SPLIT_GENERATION = _SPLIT_GENERATION, True
    try:
        yield
    finally:
        _SPLIT_GENERATION = previous


def generation_is_split() -> bool:
    return _SPLIT_GENERATION and process_state().num_processes > 1
