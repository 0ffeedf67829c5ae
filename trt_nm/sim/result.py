"""What a simulation returns: :class:`SimResult` (per-timestep logits, spike and operation
counts), :class:`LayerStats` (static facts per node), :func:`concat_results`, and the error a
graph the simulator cannot run raises (:data:`SimulationError`, the same class as
:class:`trt_nm.errors.NirError`: one error family for graph problems)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trt_nm.errors import ConfigError, NirError

#: a NIR graph the simulator cannot run (unsupported node, missing dt, cycle): the same class
#: as :class:`trt_nm.errors.NirError`, kept under this name for ``except`` clauses and tests
SimulationError = NirError


@dataclass
class LayerStats:
    """Static facts about one node, gathered while simulating.

    Attributes:
        name: node name in the graph.
        kind: NIR node type name (``"Conv2d"``, ``"LIF"``, ...).
        neurons: elements of one sample's output (the layer's neurons), batch-free.
        weights: number of weights (weighted nodes), else 0.
        nonzero_weights: number of nonzero weights (connection sparsity = 1 - nonzero/weights).
        dense_macs: MACs per sample per timestep of the equivalent dense (ANN) layer:
            output elements x fan-in, counting every weight.
        op_kind: "AC" when the node's input is binary events, "MAC" when dense, "" otherwise.
    """

    name: str
    kind: str
    neurons: int = 0
    weights: int = 0
    nonzero_weights: int = 0
    dense_macs: int = 0
    op_kind: str = ""


@dataclass
class SimResult:
    """What :func:`trt_nm.sim.simulate` returns. All counts are per sample per timestep.

    Attributes:
        logits: the Output node's value per timestep ``[T, B, C]``.
        cum_logits: mean of the first t outputs ``[T, B, C]`` (the prediction after t steps).
        spikes: spiking node name -> spikes emitted ``[T, B]`` (float64 counts).
        synops: weighted node name -> synaptic operations ``[T, B]`` (ACs or MACs, see
            ``layers[name].op_kind``), float64.
        layers: node name -> :class:`LayerStats`, in execution order.
        spike_trains: spiking node name -> spikes ``[T, B, *shape]`` (only with ``record=True``).
        dt: the time step used (seconds).
        reset: the reset rule used for LIF/IF nodes ("zero" or "subtract").
    """

    logits: torch.Tensor
    cum_logits: torch.Tensor
    spikes: dict[str, torch.Tensor]
    synops: dict[str, torch.Tensor]
    layers: dict[str, LayerStats]
    spike_trains: dict[str, torch.Tensor] = field(default_factory=dict)
    dt: float = 1.0
    reset: str = "zero"

    @property
    def T(self) -> int:
        return int(self.logits.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.logits.shape[1])

    def step_mask(self, exit_steps: torch.Tensor | None = None) -> torch.Tensor:
        """``[T, B]`` float64 mask of the timesteps each sample ran: ``t < exit_steps[b]``.

        Args:
            exit_steps: 1-based exit step per sample ``[B]``; None means all T steps.
        """
        T, B = self.T, self.batch_size
        if exit_steps is None:
            return torch.ones(T, B, dtype=torch.float64)
        steps = torch.arange(1, T + 1).unsqueeze(1)
        return (steps <= exit_steps.cpu().view(1, B)).double()

    def spike_totals(self, exit_steps: torch.Tensor | None = None) -> dict[str, float]:
        """Spikes per layer summed over samples and the timesteps each sample ran."""
        m = self.step_mask(exit_steps)
        return {k: float((v.cpu() * m).sum()) for k, v in self.spikes.items()}

    def synop_totals(self, exit_steps: torch.Tensor | None = None) -> dict[str, float]:
        """Synaptic operations per weighted layer summed like :meth:`spike_totals`."""
        m = self.step_mask(exit_steps)
        return {k: float((v.cpu() * m).sum()) for k, v in self.synops.items()}

    def spikes_per_timestep(self) -> dict[str, list[float]]:
        """Spikes per layer per timestep, summed over the batch (no early exit)."""
        return {k: v.sum(1).tolist() for k, v in self.spikes.items()}


@dataclass
class ExitRun:
    """What :meth:`trt_nm.sim.Simulator.run_exit` returns: a simulation with EXECUTED early
    exit, where each sample ran only up to its exit step.

    Attributes:
        exit_steps: 1-based exit step per sample ``[B]`` (int64, CPU).
        predictions: argmax of the cumulative logits at the exit step ``[B]`` (int64, CPU).
        logits: the Output node's value ``[T, B, C]`` for the steps each sample ran, NaN after.
        cum_logits: mean of the first t outputs ``[T, B, C]`` (the rule's input), NaN after exit.
        spikes / synops: per layer ``[T, B]`` float64 counts for the steps run, 0 after exit.
        layers: node name -> :class:`LayerStats` (from the first chunk).
        row_steps: (sample, step) rows the engine computed: the steps run, plus steps computed
            inside a chunk after a sample's exit and padding rows (see :mod:`trt_nm.sim.exit_run`).
        chunks: number of chunks (graph passes) run.
        dt / reset: as in :class:`SimResult`.

    ``count_ops(run)`` (:func:`trt_nm.metrics.energy.count_ops`) counts only the steps run:
    :meth:`step_mask` defaults to this run's own exit steps.
    """

    exit_steps: torch.Tensor
    predictions: torch.Tensor
    logits: torch.Tensor
    cum_logits: torch.Tensor
    spikes: dict[str, torch.Tensor]
    synops: dict[str, torch.Tensor]
    layers: dict[str, LayerStats]
    row_steps: int = 0
    chunks: int = 0
    dt: float = 1.0
    reset: str = "zero"

    @property
    def T(self) -> int:
        return int(self.logits.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.exit_steps.shape[0])

    @property
    def mean_timesteps(self) -> float:
        """Mean exit step over the samples."""
        return float(self.exit_steps.double().mean())

    def step_mask(self, exit_steps: torch.Tensor | None = None) -> torch.Tensor:
        """``[T, B]`` float64 mask ``t < exit_steps[b]``; default: the steps this run ran."""
        steps = self.exit_steps if exit_steps is None else exit_steps
        return (torch.arange(1, self.T + 1).unsqueeze(1) <= steps.cpu().view(1, -1)).double()

    def spike_totals(self, exit_steps: torch.Tensor | None = None) -> dict[str, float]:
        """Spikes per layer summed over samples and the steps they ran."""
        m = self.step_mask(exit_steps)
        return {k: float((v.cpu() * m).sum()) for k, v in self.spikes.items()}

    def synop_totals(self, exit_steps: torch.Tensor | None = None) -> dict[str, float]:
        """Synaptic operations per weighted layer summed like :meth:`spike_totals`."""
        m = self.step_mask(exit_steps)
        return {k: float((v.cpu() * m).sum()) for k, v in self.synops.items()}


def concat_exit_runs(runs: list[ExitRun]) -> ExitRun:
    """Join :class:`ExitRun` s of consecutive batches along the batch dimension (same T)."""
    if not runs:
        raise ConfigError("no simulation results to join")
    first = runs[0]
    if any(r.T != first.T for r in runs):
        raise ConfigError("cannot join simulation results with different T")

    def cat(key: str, dim: int) -> torch.Tensor:
        return torch.cat([getattr(r, key) for r in runs], dim)

    return ExitRun(
        exit_steps=cat("exit_steps", 0), predictions=cat("predictions", 0),
        logits=cat("logits", 1), cum_logits=cat("cum_logits", 1),
        spikes={k: torch.cat([r.spikes[k] for r in runs], 1) for k in first.spikes},
        synops={k: torch.cat([r.synops[k] for r in runs], 1) for k in first.synops},
        layers=first.layers, row_steps=sum(r.row_steps for r in runs), chunks=sum(r.chunks for r in runs),
        dt=first.dt, reset=first.reset,
    )


def concat_results(results: list[SimResult]) -> SimResult:
    """Join results of consecutive batches along the batch dimension (same graph, same T).

    Args:
        results: results of batches ``[T, B_i, ...]`` in order.

    Returns:
        one :class:`SimResult` over ``[T, sum(B_i), ...]`` (``layers``, ``dt``, ``reset`` of the first).
    """
    if not results:
        raise ConfigError("no simulation results to join")
    first = results[0]
    if any(r.T != first.T for r in results):
        raise ConfigError("cannot join simulation results with different T")

    def cat(key: str) -> dict[str, torch.Tensor]:
        return {k: torch.cat([getattr(r, key)[k] for r in results], 1) for k in getattr(first, key)}

    return SimResult(
        logits=torch.cat([r.logits for r in results], 1),
        cum_logits=torch.cat([r.cum_logits for r in results], 1),
        spikes=cat("spikes"),
        synops=cat("synops"),
        layers=first.layers,
        spike_trains=cat("spike_trains"),
        dt=first.dt,
        reset=first.reset,
    )


__all__ = ["SimResult", "ExitRun", "LayerStats", "concat_results", "concat_exit_runs", "SimulationError"]
