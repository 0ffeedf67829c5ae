"""The NIR simulator: run a graph on time-major input, count spikes and synaptic operations.

Two parts: :func:`simulate_reference` (:mod:`trt_nm.sim.reference`), a short interpreter written
straight from the node table, one timestep at a time -- the readable ground truth -- and the fast
engine :func:`simulate` / :class:`Simulator` (:mod:`trt_nm.sim.engine`, with its helpers in
``layers``, ``neurons``, ``planner``, ``counting``, ``bounds``, ``frames``, ``workspace``),
which equals it bit for bit. Both return :class:`SimResult` (:mod:`trt_nm.sim.result`).
"""

from trt_nm.sim.engine import Simulator, simulate
from trt_nm.sim.reference import simulate_reference
from trt_nm.sim.result import LayerStats, SimResult, SimulationError, concat_results

__all__ = ["simulate", "simulate_reference", "Simulator", "SimResult", "LayerStats", "SimulationError",
           "concat_results"]
