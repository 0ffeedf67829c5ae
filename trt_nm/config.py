"""Frozen configuration dataclasses shared by the neuron, the losses and the trainer.

All validation of user-supplied values happens here, in ``__post_init__``, and raises
:class:`~trt_nm.errors.ConfigError` (never ``assert``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trt_nm.errors import ConfigError
from trt_nm.limits import (
    check_batch,
    check_epochs,
    check_float,
    check_int,
    check_seed,
    check_T,
    check_workers,
)

RESET_MODES = ("zero", "subtract")


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    return value


#: what ``TrainConfig.device`` may name (resolved, and a missing GPU refused, by the trainer)
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]{1,4})?|mps")


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 4096 or "\0" in value:
        raise ConfigError(f"{name} must be a non-empty string, got {_short(value)}")
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
        # Every path (CLI, checkpoint config, Python API) meets the same validators and bounds
        # (trt_nm.limits): a stored config can never ask for what a command line may not.

        for name in ("arch", "backend", "dataset", "loss", "encoding", "optimizer", "scheduler",
                     "device", "amp", "out_dir", "reset", "surrogate"):
            _string(name, getattr(self, name))
        for name in ("data_root", "qat_target"):
            if getattr(self, name) is not None:
                _string(name, getattr(self, name))
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"unknown device {self.device!r}; use cpu, cuda, cuda:N or auto")
        object.__setattr__(self, "T", check_T(self.T))
        object.__setattr__(self, "epochs", check_epochs(self.epochs))
        object.__setattr__(self, "batch_size", check_batch(self.batch_size))
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "num_workers", check_workers(self.num_workers))
        object.__setattr__(self, "lr", check_float(self.lr, "lr", 0.0, low_open=True))
        object.__setattr__(self, "weight_decay", check_float(self.weight_decay, "weight decay", 0.0))
        object.__setattr__(self, "tau", check_float(self.tau, "tau"))
        object.__setattr__(self, "threshold", check_float(self.threshold, "threshold"))
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile must be true or false, got {self.compile!r}")
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
            if v is not None:
                object.__setattr__(self, name, check_int(v, name, 1, 2**63 - 1))
        if not isinstance(self.loss_kwargs, dict):
            raise ConfigError(f"loss_kwargs must be a mapping of names to numbers, got {_short(self.loss_kwargs)}")
        kwargs = {}
        for k, v in self.loss_kwargs.items():
            kwargs[_string("loss hyperparameter name", k)] = check_float(v, f"loss hyperparameter {k}")
        object.__setattr__(self, "loss_kwargs", kwargs)
        if isinstance(self.fisher_epochs, (str, bytes)) or not isinstance(self.fisher_epochs, (tuple, list)):
            raise ConfigError(f"fisher epochs must be a list of epochs, got {_short(self.fisher_epochs)}")
        object.__setattr__(self, "fisher_epochs", tuple(check_epochs(e) for e in self.fisher_epochs))
        self.neuron_config()  # validates tau/threshold/reset/surrogate
        from trt_nm.losses import Loss  # imported here: trt_nm.losses imports this module

        Loss(self.loss, **self.loss_kwargs)  # unknown loss, negative lamb, eta > 1, ...

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
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
