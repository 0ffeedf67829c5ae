"""The plain-torch reference backend: the canonical neuron itself (the oracle)."""

from __future__ import annotations

from ..config import NeuronConfig
from ..neuron import LIF
from ._base import LibraryBackend


class TorchBackend(LibraryBackend):
    name = "torch"
    extra = None
    requires = None

    def neuron(self, cfg: NeuronConfig) -> LIF:
        return LIF(cfg)
