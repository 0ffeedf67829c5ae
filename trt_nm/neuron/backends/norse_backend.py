"""Norse adapter: ``norse.torch.LIFBoxCell`` configured to be the canonical neuron.

LIFBox integrates ``v += dt * tau_mem_inv * (v_leak - v + i)``, i.e.
``v = (1 - a) v + a i`` with ``a = dt * tau_mem_inv``. With ``dt = 1``,
``tau_mem_inv = 1 - beta``, ``v_leak = 0`` and the input scaled by ``1 / (1 - beta)`` this is
``v = beta v + x``. It is exact in floating point for beta = 0.5 (the paper's tau = 2); for
other betas rounding may differ in the last bit, which can flip a spike that sits exactly at
threshold. Norse resets with ``(1 - z) v + z v_reset`` (not detached) and its ``"triangle"``
surrogate is ``alpha * relu(1 - |x|)``: the canonical triangle with width 1 and alpha 1.

Norse cannot express a non-leaky neuron (beta = 1) or surrogates other than the width-1
triangle through this cell; those raise a clear error.
"""

from __future__ import annotations

import torch

from trt_nm.config import NeuronConfig
from trt_nm.errors import ConfigError
from trt_nm.neuron.backends.base import LibraryBackend
from trt_nm.neuron.lif import SpikingNeuron


class NorseLIF(SpikingNeuron):
    backend_name = "norse"

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__(cfg)
        if cfg.beta >= 1.0:
            raise ConfigError("the norse backend cannot express beta = 1 (no leak); use torch or snntorch")
        if cfg.surrogate != "triangle" or cfg.scale != 1.0:
            raise ConfigError(
                f"the norse backend has no {cfg.surrogate!r} surrogate with scale {cfg.scale}; "
                "it supports surrogate 'triangle' with scale 1 (or use backend torch/snntorch)"
            )
        import norse.torch as nt
        from norse.torch.functional.lif_box import LIFBoxFeedForwardState
        from norse.torch.functional.reset import reset_subtract, reset_value

        p = nt.LIFBoxParameters(
            tau_mem_inv=torch.as_tensor(1.0 - cfg.beta),
            v_leak=torch.as_tensor(0.0),
            v_th=torch.as_tensor(cfg.threshold),
            v_reset=torch.as_tensor(0.0),
            method="triangle",
            alpha=1.0,
            reset_method=reset_value if cfg.reset == "zero" else reset_subtract,
        )
        self.cell = nt.LIFBoxCell(p, dt=1.0)
        self._state_cls = LIFBoxFeedForwardState
        self.in_scale = 1.0 / (1.0 - cfg.beta)

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, state = self.cell(x * self.in_scale, self._state_cls(v=v))
        return z, state.v


class NorseBackend(LibraryBackend):
    name = "norse"
    extra = "norse"
    requires = "norse"

    def neuron(self, cfg: NeuronConfig) -> NorseLIF:
        return NorseLIF(cfg)
