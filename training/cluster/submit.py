"""Render an sbatch script from the ``cluster`` config and submit it (what submitit users expect).

The rendered script is the shipped one (``slurm/train_mpi.sbatch`` or ``slurm/train_ray.sbatch``)
with its ``#SBATCH`` lines replaced by the cluster config's, and the Hydra overrides baked in, so
the file kept next to the submission says exactly what ran.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from training.cluster.config import ClusterConfig
from training.errors import RiskbrainError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def sbatch_lines(cluster: ClusterConfig, launcher: str) -> list[str]:
    ray = launcher == "ray"
    opts = {
        "job-name": f"riskbrain-{'ray' if ray else 'mpi'}",
        "partition": cluster.partition,
        "account": cluster.account,
        "qos": cluster.qos,
        "nodes": cluster.nodes,
        "ntasks-per-node": 1 if ray else cluster.tasks_per_node,  # Ray: one Ray node per Slurm node
        "cpus-per-task": cluster.cpus_per_task * (cluster.tasks_per_node if ray else 1),
        "gpus-per-node": cluster.gpus_per_node or None,
        "time": cluster.time,
        "output": f"{cluster.log_dir}/slurm-%j.out",
        "open-mode": "append",
        "signal": f"B:{cluster.signal}@{cluster.signal_seconds}",
    }
    return [f"#SBATCH --{k}={v}" for k, v in opts.items() if v is not None] + ["#SBATCH --requeue"]


def render(cluster: ClusterConfig, launcher: str, overrides: list[str], env: str | None) -> str:
    """The shipped script for the launcher, with the cluster's resources and the overrides baked in."""
    template = (
        PROJECT_ROOT / "slurm" / f"train_{'ray' if launcher == 'ray' else 'mpi'}.sbatch"
    ).read_text()
    shebang, *body = [line for line in template.splitlines() if not line.startswith("#SBATCH")]
    exports = {
        "RISKBRAIN_HOME": str(PROJECT_ROOT),
        "RISKBRAIN_SIGNAL": cluster.signal,
        "RISKBRAIN_ENV": env,
    }
    return (
        "\n".join(
            [
                shebang,
                "# Rendered by `python -m jobs.submit` from the cluster config; edit the config, not this file.",
                *sbatch_lines(cluster, launcher),
                *(f"export {k}={shlex.quote(v)}" for k, v in exports.items() if v),
                "set -- " + " ".join(shlex.quote(o) for o in overrides),
                *body,
            ]
        )
        + "\n"
    )


def default_env() -> str | None:
    """The environment this command runs in, when it is a virtualenv or conda env (jobs then use it)."""
    prefix = Path(sys.prefix)
    return (
        str(prefix)
        if (prefix / "bin" / "activate").is_file() or (prefix / "conda-meta").is_dir()
        else None
    )


def submit(script: Path) -> str:
    """``sbatch`` the script from the project root; returns the job id."""
    try:
        proc = subprocess.run(
            ["sbatch", "--parsable", str(script)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        raise RiskbrainError(
            "sbatch not found: run this on a Slurm login node (or start one: bash .ci/slurm.sh start)"
        ) from None
    if proc.returncode != 0:
        raise RiskbrainError(f"sbatch refused {script}: {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]
