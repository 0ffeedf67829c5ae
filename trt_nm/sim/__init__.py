"""The NIR simulator: run a graph on time-major input, count spikes and synaptic operations.

Two parts: :func:`simulate_reference` (:mod:`trt_nm.sim.reference`), a short interpreter written
straight from the node table, one timestep at a time -- the readable ground truth -- and the fast
engine :func:`simulate` / :class:`Simulator` (:mod:`trt_nm.sim.engine`, with its helpers in
``layers``, ``neurons``, ``planner``, ``counting``, ``bounds``, ``frames``, ``workspace``),
which equals it bit for bit. Both return :class:`SimResult` (:mod:`trt_nm.sim.result`).
:meth:`Simulator.run_exit` runs with executed early exit (:mod:`trt_nm.sim.exit_run`) and
returns :class:`ExitRun`.
"""

from trt_nm.sim.engine import Simulator, simulate
from trt_nm.sim.reference import simulate_reference
from trt_nm.sim.result import (
           ExitRun,
           LayerStats,
           SimResult,
           SimulationError,
           concat_exit_runs,
           concat_results,
)

__all__ = ["simulate", "simulate_reference", "Simulator", "SimResult", "ExitRun", "LayerStats", "SimulationError",
           "concat_results", "concat_exit_runs"]
