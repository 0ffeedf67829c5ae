"""The canonical LIF neuron: an explicit-state pure function plus thin modules.

``lif_step`` is the single place where the neuron maths is written. Every backend adapter
(:mod:`trt_nm.neuron.backends`) must reproduce it exactly; ``tests/test_backends.py`` proves it.
"""

from __future__ import annotations

import torch
from torch import nn

from trt_nm.config import NeuronConfig
from trt_nm.neuron.surrogate import spike


def lif_step(
    x: torch.Tensor, v: torch.Tensor, cfg: NeuronConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """One timestep of the canonical LIF.

    Args:
        x: input current at this timestep, any shape ``[B, ...]`` (threshold units).
        v: membrane potential after the previous step's reset, same shape as ``x``.
        cfg: neuron parameters.

    Returns:
        ``(spikes, v_next)``: spikes in {0, 1} and the membrane after reset, both shaped like x.
    """
    h = cfg.beta * v + x
    s = spike(h - cfg.threshold, cfg.surrogate, cfg.scale)
    if cfg.reset == "zero":
        v_next = h * (1.0 - s)
    else:
        v_next = h - s * cfg.threshold
    return s, v_next


class SpikingNeuron(nn.Module):
    """Base of every neuron module: multi-step over ``[T, B, ...]``, explicit state.

    Subclasses implement :meth:`step`. Neuron modules hold no parameters or persistent
    buffers, so a model's ``state_dict`` is the same whichever backend built it.
    """

    backend_name: str = "base"

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One timestep: ``(x [B, ...], v [B, ...]) -> (spikes, v_next)``."""
        raise NotImplementedError

    def run(
        self, x: torch.Tensor, v: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All timesteps: ``x [T, B, ...] -> (spikes [T, B, ...], v_T [B, ...])``."""
        if v is None:
            v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            s, v = self.step(x[t], v)
            out.append(s)
        return torch.stack(out), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes ``[T, B, ...]`` for input ``[T, B, ...]`` starting from rest."""
        return self.run(x)[0]

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"backend={self.backend_name}, beta={c.beta}, threshold={c.threshold}, "
            f"reset={c.reset}, surrogate={c.surrogate}"
        )


class LIF(SpikingNeuron):
    """The canonical LIF in plain torch (the reference oracle)."""

    backend_name = "torch"

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lif_step(x, v, self.cfg)
