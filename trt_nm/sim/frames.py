"""Static-frame detection: is an input direct-coded (the same frame at every timestep)?

Then the stateless nodes before the first neuron run once on ``[B, ...]`` and their result
stands for every step (bit-identical to running them on ``[T*B, ...]``).
"""

from __future__ import annotations

import numpy as np
import torch


def _frames_identical(x: torch.Tensor) -> bool:
    """Whether every timestep of ``x [T, ...]`` holds the same bits as the first (T > 1).

    Bitwise, so identical bits (NaN payloads included) count as equal and -0.0 vs +0.0 does not:
    exactly the inputs whose results cannot differ. A frame expanded over time (stride 0) is
    identical without a look. On the CPU the frames are compared as 64-bit words with numpy
    (several times faster than ``torch.equal``), after a prefix check and a check of words
    spread over the frame that reject changing inputs at once.
    """
    T = int(x.shape[0])
    if T < 2:
        return False
    if x.stride(0) == 0:  # one frame expanded over time (x.expand(T, ...)): identical by construction
        return True
    if x.device.type != "cpu" or not x.is_contiguous() or x.dtype not in (torch.float32, torch.float64):
        return all(torch.equal(x[t], x[0]) for t in range(1, T))
    a = x.reshape(T, -1).numpy()
    word = next(w for w in (8, 4, 2, 1) if (a.shape[1] * a.itemsize) % w == 0)
    words = a.view(np.dtype(f"<u{word}") if word > 1 else np.uint8)
    head = words[:, :16]
    if not (head == head[:1]).all():
        return False
    probe = words[:, :: max(1, words.shape[1] // 4096)]  # about 4,096 words spread over the frame
    if not (probe == probe[:1]).all():
        return False
    first = words[0]
    return all(np.array_equal(words[t], first) for t in range(1, T))
