"""The canonical neuron: the paper's LIF as a pure step function and thin modules
(:mod:`.lif`), surrogate gradients (:mod:`.surrogate`) and the backend adapters that must
reproduce it exactly (:mod:`.backends`)."""

from trt_nm.neuron.lif import LIF, SpikingNeuron, lif_step
from trt_nm.neuron.surrogate import SpikeFn, get_surrogate, list_surrogates, spike

__all__ = ["LIF", "SpikingNeuron", "lif_step", "SpikeFn", "get_surrogate", "list_surrogates", "spike"]
