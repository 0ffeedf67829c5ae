"""Frozen configuration dataclasses shared by the neuron, the losses and the trainer.

All validation of user-supplied values happens here, in ``__post_init__``, and raises
:class:`~trt_nm.errors.ConfigError` (never ``assert``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trt_nm.errors import ConfigError

RESET_MODES = ("zero", "subtract")


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    return value


@dataclass(frozen=True)
class NeuronConfig:
    """The canonical discrete LIF neuron (the TRT paper's).

    Per timestep, with input current ``x`` (threshold units) and membrane ``v``::

        h = beta * v + x            # leaky integration, beta = 1 / tau
        s = H(h - threshold)        # spike (surrogate gradient in backward)
        v = h * (1 - s)             # reset="zero": hard reset to 0, not detached
        v = h - s * threshold       # reset="subtract"

    Attributes:
        beta: membrane decay per timestep, in (0, 1]; the paper's tau=2 gives 0.5.
        threshold: firing threshold, > 0.
        reset: "zero" (paper) or "subtract".
        surrogate: name in :func:`trt_nm.neuron.surrogate.list_surrogates`.
        surrogate_scale: the surrogate's shape parameter (None: its default).
    """

    beta: float = 0.5
    threshold: float = 1.0
    reset: str = "zero"
    surrogate: str = "triangle"
    surrogate_scale: float | None = None

    def __post_init__(self) -> None:
        # imported here, not at the top: trt_nm.neuron's package __init__ imports trt_nm.neuron.lif,
        # which imports this module (a cycle through the package, not between the two modules)
        from trt_nm.neuron.surrogate import get_surrogate

        beta = _finite("beta", self.beta)
        if not 0.0 < beta <= 1.0:
            raise ConfigError(f"beta must be in (0, 1], got {beta} (tau = 1/beta must be >= 1)")
        thr = _finite("threshold", self.threshold)
        if thr <= 0:
            raise ConfigError(f"threshold must be > 0, got {thr}")
        if self.reset not in RESET_MODES:
            raise ConfigError(f"unknown reset {self.reset!r}; valid resets: {', '.join(RESET_MODES)}")
        get_surrogate(self.surrogate)
        if self.surrogate_scale is not None and not _finite("surrogate_scale", self.surrogate_scale) > 0:
            raise ConfigError(f"surrogate_scale must be > 0, got {self.surrogate_scale}")
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "threshold", thr)

    @classmethod
    def from_tau(cls, tau: float = 2.0, **kwargs: Any) -> NeuronConfig:
        """Build from the paper's time constant (``v = v / tau + x``)."""
        tau = _finite("tau", tau)
        if tau < 1.0:
            raise ConfigError(f"tau must be >= 1, got {tau}")
        return cls(beta=1.0 / tau, **kwargs)

    @property
    def tau(self) -> float:
        """Time constant in timesteps (1 / beta)."""
        return 1.0 / self.beta

    @property
    def scale(self) -> float:
        """Resolved surrogate scale."""
        from trt_nm.neuron.surrogate import get_surrogate  # see __post_init__

        if self.surrogate_scale is not None:
            return float(self.surrogate_scale)
        return get_surrogate(self.surrogate).default_scale

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what ``SpikingModel.spec`` and checkpoints store)."""
        return asdict(self)


@dataclass(frozen=True)
class TRTConfig:
    """Hyperparameters of the TRT loss (defaults are the paper's)."""

    lamb: float = 1e-5
    decay: float = 0.5
    eps: float = 1e-5
    eta: float = 0.05

    def __post_init__(self) -> None:
        for f in fields(self):
            v = _finite(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, v)
        if self.lamb < 0:
            raise ConfigError(f"lamb must be >= 0, got {self.lamb}")
        if self.decay < 0:
            raise ConfigError(f"decay must be >= 0, got {self.decay}")
        if self.eps <= 0:
            raise ConfigError(f"eps must be > 0, got {self.eps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"eta must be in [0, 1], got {self.eta}")


@dataclass(frozen=True)
class TETConfig:
    """Hyperparameters of the TET loss (Deng et al., ICLR 2022)."""

    lamb: float = 1e-3
    phi: float = 1.0

    def __post_init__(self) -> None:
        lamb = _finite("lamb", self.lamb)
        if not 0.0 <= lamb <= 1.0:
            raise ConfigError(f"lamb must be in [0, 1], got {lamb}")
        object.__setattr__(self, "lamb", lamb)
        object.__setattr__(self, "phi", _finite("phi", self.phi))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; stored in checkpoints as plain data."""

    arch: str = "cnn-small"
    backend: str = "torch"
    dataset: str = "mnist5k"
    data_root: str | None = None
    loss: str = "trt"
    loss_kwargs: dict[str, float] = field(default_factory=dict)
    T: int = 4
    encoding: str = "direct"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "cosine"
    device: str = "cpu"
    amp: str = "none"
    compile: bool = False
    seed: int = 0
    out_dir: str = "runs/default"
    tau: float = 2.0
    threshold: float = 1.0
    reset: str = "zero"
    surrogate: str = "triangle"
    num_workers: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    max_steps_per_epoch: int | None = None
    #: quantization-aware fine-tuning for this hardware target (see trt_nm.exporters)
    qat_target: str | None = None
    #: epochs (1-based) after which the Fisher information per timestep is recorded
    fisher_epochs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if int(self.T) != self.T or self.T < 1:
            raise ConfigError(f"T must be an integer >= 1, got {self.T}")
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if not _finite("lr", self.lr) > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ConfigError(f"unknown amp {self.amp!r}; valid: none, bf16, fp16")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; valid: adam, sgd")
        if self.scheduler not in ("cosine", "none"):
            raise ConfigError(f"unknown scheduler {self.scheduler!r}; valid: cosine, none")
        if self.encoding not in ("direct", "poisson"):
            raise ConfigError(f"unknown encoding {self.encoding!r}; valid: direct, poisson")
        for name in ("train_limit", "test_limit", "max_steps_per_epoch"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        self.neuron_config()  # validates tau/threshold/reset/surrogate
        object.__setattr__(self, "loss_kwargs", dict(self.loss_kwargs))
        object.__setattr__(self, "fisher_epochs", tuple(int(e) for e in self.fisher_epochs))
        if any(e < 1 for e in self.fisher_epochs):
            raise ConfigError(f"fisher epochs must be >= 1, got {self.fisher_epochs}")

    def neuron_config(self) -> NeuronConfig:
        """The :class:`NeuronConfig` this run's tau/threshold/reset/surrogate describe."""
        return NeuronConfig.from_tau(
            self.tau, threshold=self.threshold, reset=self.reset, surrogate=self.surrogate
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
