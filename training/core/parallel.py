"""Data or ensemble parallelism: what each rank trains, and how the trained networks come together.

Data parallelism (the default): every rank holds a shard of the rows and all ranks train one
network, gradients summed (``training/core/loop.py``). Ensemble parallelism (``launcher.parallelism=
ensemble``): every rank reads every row and trains a network of its own, seeded ``seed + rank``,
with no communication while training; rank 0 then gathers the networks into one ``Ensemble``,
whose PD is the mean of the members' PDs. Useful when the data set is small and the cluster is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from training.config import TrainConfig
from training.core.config import Parallelism
from training.core.run_dir import RunDir
from training.core.state import FitResult, TrainState
from training.data.prepare import TrainingData
from training.models.build import build_model
from training.models.embeddings import fit_bins
from training.models.ensemble import Ensemble
from training.runtime.dist import DistContext
from training.serving.bundle import Member


@dataclass(frozen=True)
class Role:
    """This rank's part: the context its network trains with, its seed and checkpoint folder.

    Two contexts, one meaning each: ``ctx`` is the only one the steps that train and measure
    this rank's network see (data parallel: every rank; ensemble: this rank alone); ``world``
    is every rank of the job, for what the job does once (tags, gathering an ensemble,
    publishing, the final barrier).
    """

    world: DistContext
    ctx: DistContext
    seed: int
    checkpoints: Path
    member: int | None = None  # ensemble parallelism: this rank's member number

    @classmethod
    def of(cls, cfg: TrainConfig, world: DistContext, run_dir: RunDir) -> Role:
        if cfg.launcher.parallelism is Parallelism.data:
            return cls(world, world, cfg.seed, run_dir.checkpoints)
        alone = DistContext(device=world.device)  # reads every row, trains without collectives
        folder = run_dir.checkpoints / f"member-{world.rank}"
        return cls(world, alone, cfg.seed + world.rank, folder, world.rank)

    @property
    def evaluates(self) -> bool:
        """Data parallel: every rank (the metrics are collective). Ensemble: rank 0 alone."""
        return self.member is None or self.world.is_main


@dataclass
class Trained:
    """The model to evaluate and publish, the networks it is made of, and how training went."""

    model: nn.Module
    members: list[Member]
    result: FitResult  # an ensemble's: member 0's
    world_size: int  # the processes that trained it
    ensemble: list[dict] = field(default_factory=list)  # per member: seed and training summary


def gather(role: Role, trained: Trained, rebuild) -> Trained | None:
    """Ensemble parallelism: every rank's network to rank 0, as one ``Ensemble`` (None elsewhere).
    ``rebuild()`` makes an untrained network of the same architecture to load each one into."""
    if role.member is None:
        return trained
    weights = {k: v.cpu() for k, v in trained.model.state_dict().items()}
    summary = trained.result.summary() | {"seed": role.seed, "member": role.member}
    everyone = role.world.allgather((weights, summary))
    if not role.world.is_main:
        return None
    networks = []
    for state, _ in everyone:
        network = rebuild()
        network.load_state_dict(state)
        networks.append(network)
    summaries = [s for _, s in everyone]
    members = trained.members * len(networks)
    return Trained(Ensemble(networks), members, trained.result, trained.world_size, summaries)


def network(cfg: TrainConfig, data: TrainingData, bins: list[torch.Tensor] | None) -> nn.Module:
    """An untrained network for ``data`` (output bias at the training default rate's log-odds)."""
    return build_model(
        cfg.model,
        n_num=data.pre.n_num_features,
        cat_cardinalities=data.pre.cat_cardinalities,
        bins=bins,
        base_rate=data.base_rate,
        directions=data.pre.directions(data.schema),
        events=data.pre.events(data.schema),
    )


def build(
    cfg: TrainConfig, data: TrainingData, role: Role, resume: dict | None
) -> tuple[TrainState, list[torch.Tensor] | None]:
    """This rank's network and its training state, loaded from ``resume`` when there is one;
    also the embedding bins the network was built with."""
    torch.manual_seed(role.seed)
    bins = fit_bins(cfg.model, data.sample_x[0])
    state = TrainState.create(network(cfg, data, bins).to(role.ctx.device), cfg.optim, role.seed)
    if resume is not None:
        state.load_state_dict(resume, role.ctx.rank)
    return state, bins
