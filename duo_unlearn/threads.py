"""torch's CPU thread count, set by the commands that promise the same bits on any machine.

Float sums split across threads round differently, so on a CPU the thread count is part of what
makes a result repeat: `duo demo`, `duo eval` and `duo tune` set it from their configs instead of inheriting
whatever OMP_NUM_THREADS or the core count gives, and each results file records the count."""

from __future__ import annotations


def check_thread_count(n: int, option: str = "num_threads") -> None:
    """The configs' check, run when they are built (before any model loads), naming their option."""
    if n < 0:
        raise ValueError(f"{option} must be >= 0 (0: torch's default), got {n}")


def pin_threads(n: int) -> int:
    """Run torch's CPU ops on ``n`` threads (0: torch's default); returns the count now in use."""
    import torch

    check_thread_count(n)
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def threads_used(previous: list[int] | None = None) -> list[int]:
    """The thread counts a result was measured at: the current one, plus those of the run it resumed
    (a resumed result with two counts mixes roundings, and the report shows it)."""
    import torch

    return sorted({*(previous or []), torch.get_num_threads()})
