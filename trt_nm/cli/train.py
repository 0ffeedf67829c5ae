"""``trt-nm train``: train a zoo model with the TRT (or TET/SDT/CE) loss."""

from __future__ import annotations

import argparse
from dataclasses import fields

from trt_nm.cli import common
from trt_nm.cli.common import finite_float, nonneg_float, positive_int
from trt_nm.config import TrainConfig
from trt_nm.errors import ConfigError
from trt_nm.losses import Loss, get_loss, list_losses
from trt_nm.models import get_model_entry, list_models
from trt_nm.training.distributed import shutdown
from trt_nm.training.trainer import Trainer, config_from_checkpoint

#: the hyperparameters each registered loss takes (from its config dataclass)
LOSS_HPARAMS = {
    name: tuple(f.name for f in fields(cfg)) if (cfg := get_loss(name).config) is not None else ()
    for name in list_losses()
}
#: the loss flags this command has (each maps to the hyperparameter of the same name)
_LOSS_FLAGS = ("lamb", "decay", "eps", "eta", "phi")


DEFAULT_EPOCHS = 5
DEFAULT_T = 4
DEFAULT_BATCH = 64
DEFAULT_LR = 1e-3


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The training flags shared by ``trt-nm train`` (a :class:`TrainConfig` per flag)."""
    p.add_argument("--model", "--arch", dest="arch", default="cnn-small",
                   help=f"zoo architecture: {', '.join(list_models())} (default cnn-small; see README)")
    p.add_argument("--backend", default="torch", help="neuron backend: torch, snntorch, norse")
    p.add_argument("--dataset", default="mnist5k", help="registered dataset (see trt-nm datasets)")
    p.add_argument("--data-root", default=None, help="directory holding the dataset's files")
    p.add_argument("--loss", default="trt", help="trt, tet, sdt or ce")
    p.add_argument("--lamb", type=nonneg_float, default=None, help="TRT lambda (1e-5) or TET lambda (1e-3)")
    p.add_argument("--decay", type=nonneg_float, default=None, help="TRT delta (0.5)")
    p.add_argument("--eps", type=finite_float, default=None, help="TRT epsilon (1e-5)")
    p.add_argument("--eta", type=nonneg_float, default=None, help="TRT MSE weight (0.05)")
    p.add_argument("--phi", type=finite_float, default=None, help="TET MSE target (1.0)")
    p.add_argument("-T", "--T", "--timesteps", dest="T", type=common.timesteps, default=None,
                   help=f"timesteps (default {DEFAULT_T}; with --target: the chip's task)")
    p.add_argument("--encoding", default="direct", help="direct (repeat) or poisson")
    p.add_argument("--epochs", type=common.epochs, default=None,
                   help=f"epochs (default {DEFAULT_EPOCHS}; with --resume: the new total, the schedule is re-planned)")
    p.add_argument("--batch-size", type=common.batch_size, default=None,
                   help=f"default {DEFAULT_BATCH} (with --target: the chip's task)")
    p.add_argument("--lr", type=finite_float, default=None, help=f"default {DEFAULT_LR} (with --target: the chip's)")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.0)
    p.add_argument("--optimizer", default="adam", help="adam (paper) or sgd")
    p.add_argument("--scheduler", default="cosine", help="cosine (paper) or none")
    p.add_argument("--tau", type=finite_float, default=2.0, help="membrane time constant (beta = 1/tau)")
    p.add_argument("--threshold", type=finite_float, default=1.0)
    p.add_argument("--reset", default="zero", help="zero (paper) or subtract")
    p.add_argument("--surrogate", default="triangle")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--amp", default="none", help="none, bf16 or fp16 (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=common.seed, default=0)
    p.add_argument("--workers", type=common.workers, default=None, help="DataLoader workers (default 0)")
    p.add_argument("--train-limit", type=positive_int, default=None, help="use only the first N training samples")
    p.add_argument("--test-limit", type=positive_int, default=None, help="use only the first N test samples")
    p.add_argument("--max-steps", type=positive_int, default=None, help="at most N steps per epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--qat-target", default=None, help="quantization-aware training for this hardware target")
    p.add_argument(
        "--fisher-epochs",
        default="",
        help="comma-separated epochs after which to record the Fisher information per timestep",
    )


def config_from_args(args: argparse.Namespace, out_dir: str) -> TrainConfig:
    """The :class:`TrainConfig` the parsed flags describe (loss hyperparameters validated)."""
    get_loss(args.loss)  # unknown names list the valid losses
    loss_kwargs = {}
    for name in _LOSS_FLAGS:
        v = getattr(args, name)
        if v is None:
            continue
        if name not in LOSS_HPARAMS[args.loss]:
            raise ConfigError(f"--{name} does not apply to loss {args.loss!r}")
        loss_kwargs[name] = v
    Loss(args.loss, **loss_kwargs)  # validate early (negative lamb, eta > 1, ...)
    return TrainConfig(
        arch=args.arch,
        backend=args.backend,
        dataset=args.dataset,
        data_root=args.data_root,
        loss=args.loss,
        loss_kwargs=loss_kwargs,
        T=args.T if args.T is not None else DEFAULT_T,
        encoding=args.encoding,
        epochs=args.epochs or DEFAULT_EPOCHS,
        batch_size=args.batch_size if args.batch_size is not None else DEFAULT_BATCH,
        lr=args.lr if args.lr is not None else DEFAULT_LR,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        scheduler=args.scheduler,
        device=args.device,
        amp=args.amp,
        compile=args.compile,
        seed=args.seed,
        out_dir=out_dir,
        tau=args.tau,
        threshold=args.threshold,
        reset=args.reset,
        surrogate=args.surrogate,
        num_workers=args.workers if args.workers is not None else 0,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        max_steps_per_epoch=args.max_steps,
        qat_target=args.qat_target,
        fisher_epochs=parse_epochs(args.fisher_epochs),
    )


def _widths(text: str) -> tuple[int, ...]:
    """argparse type: ``"64"`` or ``"128,64"`` -> widths, each in 1..100000."""
    try:
        w = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not w or not all(1 <= v <= 100_000 for v in w):
        raise argparse.ArgumentTypeError(f"widths must be 1..100000, got {text!r}")
    return w


def parse_epochs(text: str) -> tuple[int, ...]:
    """``"1,5,10"`` -> ``(1, 5, 10)``; a clear error for anything else."""
    if not text:
        return ()
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--fisher-epochs expects comma-separated integers, got {text!r}") from None


#: flags that keep their meaning with ``--target`` (everything else is the chip's to decide)
_TARGET_FLAGS = frozenset({"T", "epochs", "batch_size", "lr", "seed", "out", "train_limit",
                           "test_limit", "quiet", "loss", *_LOSS_FLAGS, "target", "hidden",
                           "device", "func", "command", "resume"})


def _flag(name: str) -> str:
    return "--" + {"arch": "model"}.get(name, name).replace("_", "-")


def run_target(args: argparse.Namespace) -> int:
    """``trt-nm train --target NAME``: hardware-aware training in the chip's semantics."""
    from trt_nm.chip.registry import get_chip
    from trt_nm.chip.train import default_config, train_chip

    chip = get_chip(args.target)
    defaults = argparse.ArgumentParser()
    add_training_args(defaults)
    base = vars(defaults.parse_args([]))
    for name, value in vars(args).items():
        if name in _TARGET_FLAGS or name not in base or value == base[name]:
            continue
        raise ConfigError(
            f"{_flag(name)} does not apply with --target {chip.name}: the chip fixes the neuron, "
            f"readout, data and model ({chip.task.dataset}, T={chip.task.T}); flags that apply: "
            "-T, --hidden, --epochs, --batch-size, --lr, --seed, --loss and its hyperparameters, "
            "--train-limit, --test-limit, --out"
        )
    if args.resume:
        raise ConfigError("--resume does not apply with --target (chip runs are short; start again)")
    if args.device not in ("auto", "cpu"):
        raise ConfigError(f"--device {args.device}: hardware-aware training runs on the CPU")
    get_loss(args.loss)
    loss_kwargs = {n: getattr(args, n) for n in _LOSS_FLAGS if getattr(args, n) is not None}
    for n in loss_kwargs:
        if n not in LOSS_HPARAMS[args.loss]:
            raise ConfigError(f"--{n} does not apply to loss {args.loss!r}")
    Loss(args.loss, **loss_kwargs)
    cfg = default_config(
        chip.name,
        T=args.T,
        hidden=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        loss=args.loss,
        loss_kwargs=loss_kwargs,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        out_dir=args.out or f"runs/{chip.name}",
    )
    train_chip(cfg, log=(lambda *a, **k: None) if args.quiet else print)
    return 0


def run(args: argparse.Namespace) -> int:
    """``trt-nm train``: train (or resume) a run; prints the per-timestep test accuracy."""
    if getattr(args, "target", None):
        return run_target(args)
    if getattr(args, "hidden", None) is not None:
        raise ConfigError("--hidden applies only with --target (zoo models set their widths by --model)")
    if args.resume:
        # the run's own config wins (validated like these flags); --epochs/--device/--workers may
        # extend or move it. Paths in a checkpoint are not trusted: the run writes beside the
        # checkpoint (or to --out) and reads data from --data-root (or the dataset's defaults).
        cfg = config_from_checkpoint(
            args.resume,
            epochs=args.epochs,
            device=args.device if args.device != "auto" else None,
            out_dir=args.out,
            data_root=args.data_root,
            num_workers=args.workers,
        )
    else:
        get_model_entry(args.arch)
        cfg = config_from_args(args, args.out or "runs/train")
    trainer = Trainer(cfg, progress=False if args.quiet else None)
    try:
        result = trainer.fit(resume=args.resume)
    finally:
        shutdown()  # all ranks leave together (not at interpreter exit, in any order)
    if not trainer.dist.is_main:  # under torchrun only rank 0 reports
        return 0
    per_t = ", ".join(f"t={t + 1}: {a:.2f}%" for t, a in enumerate(result.final_acc_per_t))
    print(f"per-timestep test accuracy: {per_t}")
    print(f"best test accuracy {result.best_acc:.2f}%; checkpoints and log in {result.out_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser("train", help="train a model (TRT loss by default)")
    add_training_args(p)
    p.add_argument("--out", default=None, help="run directory (checkpoints, log.csv); default runs/train")
    p.add_argument("--target", default=None, metavar="CHIP",
                   help="hardware-aware training for a chip (xylo, loihi2, speck): its neurons, "
                        "readout, grids and delays from the first step; alone, it picks a task that fits")
    p.add_argument("--hidden", type=_widths, default=None, metavar="W[,W...]",
                   help="with --target: hidden layer widths (default: the chip's task)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue a run from its last.pt (file or run dir); writes beside it unless --out")
    p.set_defaults(func=run)
