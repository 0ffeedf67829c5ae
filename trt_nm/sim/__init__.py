"""The NIR simulator: run a graph on time-major input, count spikes and synaptic operations."""

from trt_nm.sim.engine import (
    LayerStats,
    SimResult,
    SimulationError,
    Simulator,
    concat_results,
    simulate,
)

__all__ = ["simulate", "Simulator", "SimResult", "LayerStats", "SimulationError", "concat_results"]
