"""The processes of a training run: which one writes the outputs, when, and what stops the others.

Lightning's `ddp` launcher re-runs the stage script for ranks 1..N-1, so a run is N processes
executing the same code. Its outputs (the metrics folder and the checkpoint) are final paths
that DVC checks, so only global rank 0 writes them: the metrics under a temporary name beside
`log_dir` (io.atomic_path), renamed into place once every rank has exited cleanly and the
checkpoint is saved. A failure anywhere publishes nothing and leaves the previous outputs as
they were; a failure on rank 0 also stops the child ranks, which would otherwise wait in a
collective for a peer that is gone.

`stop_with_parent` ties a stage to DVC (and a child rank to rank 0): killing `dvc repro` stops the
training too, instead of leaving it to write outputs later that DVC reports as modified.

Light on purpose (no torch, no Lightning): the stages call `stop_with_parent` first thing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from text_recognizer.io import atomic_path

if TYPE_CHECKING:
    import pytorch_lightning as pl

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Where a launcher or scheduler put this process: Lightning's `ddp` launcher starts ranks > 0 with
# LOCAL_RANK (and NODE_RANK) set, torchrun sets RANK, SLURM and LSF their own. Rank 0 has none or 0.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


class DistributedRunError(RuntimeError):
    """A rank of a data-parallel run failed or disagrees with the others; nothing was written."""


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: `finally` blocks remove the temporaries


def run_by_a_parent() -> bool:
    """Whether this process only exists for its parent: a stage command DVC runs (DVC sets DVC_ROOT
    for it) or a child rank that rank 0 started. Not a user's own `nohup python stages/...`."""
    return "DVC_ROOT" in os.environ or not launched_as_rank_zero()


def stop_with_parent() -> bool:
    """When run_by_a_parent, have the kernel send SIGTERM here once the parent dies (Linux only).

    Returns whether it did. SIGTERM then raises SystemExit (if nothing else handles it), so
    temporaries are removed on the way out; during `fit` Lightning's own handler also stops the
    child ranks. A parent that died just before the call is caught by comparing its pid before
    and after. (DVC runs a one-line command through `$SHELL -c`, which execs it: DVC is the parent.)
    """
    if not sys.platform.startswith("linux") or not run_by_a_parent():
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if os.getppid() != parent:  # orphaned between the two calls: the signal will never come
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0 of its run, known before the Trainer exists.

    Read from the environment, because the outputs are claimed before the Trainer starts the
    other ranks. RankZeroOutputs.watch checks the Trainer's own rank against this answer, so a
    launcher this does not know fails loudly instead of writing from two processes.
    """
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


def child_ranks(trainer: pl.Trainer) -> list[subprocess.Popen[bytes]]:
    """The processes Lightning's `ddp` launcher started from this one (ranks 1..N-1 of this node)."""
    procs = getattr(trainer.strategy.launcher, "procs", None) or []  # ddp_spawn's are multiprocessing's own
    return [proc for proc in procs if isinstance(proc, subprocess.Popen)]


class RankZeroOutputs:
    """A metrics folder that only global rank 0 writes, published once every rank has finished.

    with RankZeroOutputs(log_dir) as outputs:   # rank 0: outputs.log_dir is a temporary folder
        trainer = pl.Trainer(...)               # ranks > 0: outputs.log_dir is None
        outputs.watch(trainer)
        trainer.fit(...)
        if outputs.all_ranks_done():            # True on rank 0 once every child exited with 0
            save_checkpoint(...)
    # rank 0: the temporary folder is now log_dir; on any failure it is gone and the children are stopped
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, child_timeout_s: float = 300.0) -> None:
        self.final = Path(log_dir)
        self.rank_zero = launched_as_rank_zero()
        self.log_dir: Path | None = None
        self.child_timeout_s = child_timeout_s
        self._trainer: pl.Trainer | None = None
        self._claim = atomic_path(self.final, replace_dir=True) if self.rank_zero else contextlib.nullcontext(None)

    def __enter__(self) -> RankZeroOutputs:
        self.log_dir = self._claim.__enter__()  # ranks > 0 must not even create a temporary name
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._claim.__exit__(kind, error, tb)  # rename into place, or remove the temporary
        finally:
            if error is not None:
                self.stop_child_ranks()

    def watch(self, trainer: pl.Trainer) -> None:
        """Remember the Trainer (its launcher knows the child ranks); check it agrees on who is rank 0."""
        if trainer.is_global_zero != self.rank_zero:
            found = ", ".join(f"{k}={os.environ[k]}" for k in RANK_VARIABLES if k in os.environ) or "no rank"
            raise DistributedRunError(
                f"Lightning makes this process global rank {trainer.global_rank}, but its environment "
                f"({found}) says otherwise: run the stage directly, or through torchrun"
            )
        self._trainer = trainer

    def all_ranks_done(self) -> bool:
        """On rank 0: wait until every child rank has exited with 0 (raise if one did not); elsewhere False.

        After `fit` the children only tear down, so this is quick. Polled rather than waited on in
        turn, so a failure is reported at once, whichever rank it is.
        """
        if not self.rank_zero:
            return False
        children = child_ranks(self._trainer) if self._trainer is not None else []
        deadline = time.monotonic() + self.child_timeout_s
        while True:
            codes = [proc.poll() for proc in children]
            failed = [(rank, code) for rank, code in enumerate(codes, start=1) if code not in (None, 0)]
            if failed:
                raise DistributedRunError(
                    f"rank {failed[0][0]} exited with code {failed[0][1]}; no outputs were written"
                )
            if all(code == 0 for code in codes):
                return True
            if time.monotonic() > deadline:
                running = [rank for rank, code in enumerate(codes, start=1) if code is None]
                raise DistributedRunError(
                    f"rank(s) {running} still running {self.child_timeout_s:.0f} s after training ended"
                )
            time.sleep(0.05)

    def stop_child_ranks(self) -> None:
        """Kill and reap the child ranks that still run (after a failure they could wait forever)."""
        if self._trainer is None:
            return
        for proc in child_ranks(self._trainer):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if sys.platform == "win32" else signal.SIGKILL)
                proc.wait()
