"""Test-only fault injection, loaded by Python at start-up when this folder is on PYTHONPATH.

With ``RISKBRAIN_FAIL_RANK=r``, rank r raises in its third training step, so the tests can check
that one failing rank ends the whole job (MPI ranks and Ray workers alike) without a hang. The
library itself has no such hook.
"""

import importlib.abc
import importlib.util
import os
import sys


def _rank() -> int:
    if "OMPI_COMM_WORLD_RANK" in os.environ:
        return int(os.environ["OMPI_COMM_WORLD_RANK"])
    import ray.train

    return ray.train.get_context().get_world_rank()


def _patch(loop) -> None:
    original, calls = loop.train_step, [0]

    def train_step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3 and _rank() == int(os.environ["RISKBRAIN_FAIL_RANK"]):
            raise RuntimeError("injected fault in step 3")
        return original(*args, **kwargs)

    loop.train_step = train_step


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "training.loop":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if os.environ.get("RISKBRAIN_FAIL_RANK"):
    sys.meta_path.insert(0, _PatchOnImport())
