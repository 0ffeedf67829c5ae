"""snnTorch adapter: ``snntorch.Leaky`` configured to be the canonical neuron.

``Leaky(beta, threshold, spike_grad=<our surrogate>, reset_mechanism="zero",
reset_delay=False)`` driven with an explicit membrane computes, per step,
``h = beta*v + x; s = H(h - thr); v = h - s*h`` with the reset *not* detached, which is
the canonical zero reset forward and backward. (Its default ``reset_delay=True`` applies the
reset one step late, and its default ``"subtract"`` mode is a different neuron.)

For ``reset="subtract"`` snnTorch's own subtract path double-counts when the membrane is
still above threshold after a reset, so the adapter runs ``Leaky`` with
``reset_mechanism="none"`` (integrate and fire only) and subtracts the threshold itself.

Leaky registers ``beta``/``threshold``/... as buffers; they are made non-persistent so the
model's ``state_dict`` does not depend on the backend.

``torch.compile(fullgraph=True)``: Leaky's forward branches on ``reset_mechanism_val``, a
0-d tensor buffer, which Dynamo sees as data-dependent control flow (a graph break). The
value is fixed when the adapter is built, so the adapter stores it as the equivalent Python
int; Leaky's forward then takes the same branch with no graph break and the same maths.
"""

from __future__ import annotations

import torch

from trt_nm.config import NeuronConfig
from trt_nm.neuron.backends.base import LibraryBackend
from trt_nm.neuron.lif import SpikingNeuron
from trt_nm.neuron.surrogate import SpikeFn


class SnnTorchLIF(SpikingNeuron):
    backend_name = "snntorch"

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__(cfg)
        import snntorch

        self.leaky = snntorch.Leaky(
            beta=cfg.beta,
            threshold=cfg.threshold,
            spike_grad=SpikeFn(cfg.surrogate, cfg.scale),
            reset_mechanism="zero" if cfg.reset == "zero" else "none",
            reset_delay=False,
            init_hidden=False,
        )
        # fixed for the adapter's lifetime: a Python int keeps Leaky's branches static
        reset_val = int(self.leaky._buffers.pop("reset_mechanism_val"))
        for name in list(self.leaky._buffers):
            buf = self.leaky._buffers.pop(name)
            self.leaky.register_buffer(name, buf, persistent=False)
        self.leaky.reset_mechanism_val = reset_val

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, v_next = self.leaky(x, v)
        if self.cfg.reset == "subtract":
            v_next = v_next - s * self.cfg.threshold
        return s, v_next


class SnnTorchBackend(LibraryBackend):
    name = "snntorch"
    extra = "snntorch"
    requires = "snntorch"

    def neuron(self, cfg: NeuronConfig) -> SnnTorchLIF:
        return SnnTorchLIF(cfg)
