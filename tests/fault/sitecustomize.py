"""Test-only fault injection, loaded by Python at start-up when this folder is on PYTHONPATH.

With ``RISKBRAIN_FAIL_RANK=r``, rank r raises in its third training step, so the tests can check
that one failing rank ends the whole job (MPI ranks and Ray workers alike) without a hang.

With ``RISKBRAIN_KILL_RANK=r`` and ``RISKBRAIN_KILL_AT_STEP=k``, rank r sends itself SIGKILL at
the start of its k-th training step (counted in this process): no exception and no clean-up, as
after the OOM killer or a lost node. It happens once per ``RISKBRAIN_KILL_MARKER`` (a path): the
marker is written first (JSON: the time, pid, rank and step), and a process that finds it, such as
a restarted worker, trains on.

With ``RISKBRAIN_STEP_SLEEP=s``, every training step first sleeps s seconds, as on a slow or busy
node: a small job then runs long enough to be signalled in the middle of its training, at almost
no CPU cost. The sleep changes no number the job computes.

With ``RISKBRAIN_SCORE_SLEEP=s``, ``jobs.score`` sleeps s seconds before each batch it scores,
so a small book is still being scored when a test stops one of its ranks.

The library itself has no such hook.
"""

import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import time


def _rank() -> int:
    if "OMPI_COMM_WORLD_RANK" in os.environ:
        return int(os.environ["OMPI_COMM_WORLD_RANK"])
    import ray.train

    return ray.train.get_context().get_world_rank()


def _kill_once(step: int) -> None:
    try:
        with open(os.environ["RISKBRAIN_KILL_MARKER"], "x") as f:
            row = {"time": time.time(), "pid": os.getpid(), "rank": _rank(), "step": step}
            f.write(json.dumps(row))
    except FileExistsError:  # killed before: this is the restarted attempt
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _patch(loop) -> None:
    original, calls = loop.train_step, [0]
    fail_rank = os.environ.get("RISKBRAIN_FAIL_RANK")
    kill_rank = os.environ.get("RISKBRAIN_KILL_RANK")
    kill_step = int(os.environ.get("RISKBRAIN_KILL_AT_STEP", "0"))
    sleep_s = float(os.environ.get("RISKBRAIN_STEP_SLEEP", "0"))

    def train_step(*args, **kwargs):
        calls[0] += 1
        time.sleep(sleep_s)
        if fail_rank and calls[0] == 3 and _rank() == int(fail_rank):
            raise RuntimeError("injected fault in step 3")
        if kill_rank and calls[0] == kill_step and _rank() == int(kill_rank):
            _kill_once(calls[0])
        return original(*args, **kwargs)

    loop.train_step = train_step


def _patch_scoring(portfolio) -> None:
    original, sleep_s = portfolio.score_batch, float(os.environ["RISKBRAIN_SCORE_SLEEP"])

    def score_batch(*args, **kwargs):
        time.sleep(sleep_s)
        return original(*args, **kwargs)

    portfolio.score_batch = score_batch


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, patch) -> None:
        self.module, self.patch = module, patch

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            self.patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if any(
    os.environ.get(k)
    for k in ("RISKBRAIN_FAIL_RANK", "RISKBRAIN_KILL_RANK", "RISKBRAIN_STEP_SLEEP")
):
    sys.meta_path.insert(0, _PatchOnImport("training.core.loop", _patch))
if os.environ.get("RISKBRAIN_SCORE_SLEEP"):
    sys.meta_path.insert(0, _PatchOnImport("training.scoring.portfolio", _patch_scoring))
