"""The plain-torch reference backend: the canonical neuron itself (the oracle)."""

from __future__ import annotations

from trt_nm.config import NeuronConfig
from trt_nm.neuron.backends.base import LibraryBackend
from trt_nm.neuron.lif import LIF


class TorchBackend(LibraryBackend):
    name = "torch"
    extra = None
    requires = None

    def neuron(self, cfg: NeuronConfig) -> LIF:
        return LIF(cfg)
