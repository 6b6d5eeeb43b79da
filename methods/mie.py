"""MIE / IGM: alternating unimodal stages, flat gradient modification (GM) between modalities, and SAM.

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/mie.md`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import Batch
from benchmark.entropy_fusion import entropy_fusion_weights, fuse_logits
from benchmark.evaluation import evaluate
from benchmark.method import Method, MethodConfig, build_optimizer, build_scheduler, eval_mode, upcast
from benchmark.models import ModelOutput, build_encoder
from benchmark.recipes import recipe
from benchmark.registry import register_method
from benchmark.sam import perturb_per_tensor_, sam_ascent

# Relative spread below which a spectrum counts as flat (all eigenvalues equal): then T = I.
DEGENERATE_RTOL = 1e-12


# ---------------------------------------------------------------------------------------------------------
# Pure functions (tested against hand computations)
# ---------------------------------------------------------------------------------------------------------


def _eigh_torch(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.linalg.eigh(m)


def _eigh_scipy(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    import scipy.linalg

    lam, vecs = scipy.linalg.eigh(m.cpu().numpy(), driver="evr")
    return torch.from_numpy(lam).to(m), torch.from_numpy(vecs).to(m)


def _eigh_svd(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # For a symmetric PSD matrix the SVD is an eigen-decomposition (U = V, singular values = eigenvalues); the
    # official code decomposes with ``torch.svd`` for that reason.
    u, s, _ = torch.linalg.svd(m)
    return s.flip(0), u.flip(1)


def _eigh_jitter(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = float(m.diagonal().abs().max()) or 1.0
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    lam, vecs = torch.linalg.eigh(m + EIGH_JITTER * scale * eye)
    return lam - EIGH_JITTER * scale, vecs


# Tried in order: LAPACK's syevd (torch) can fail to converge on rank-deficient moments (seen with MKL on AMD
# EPYC for a 1152x1152 conv-layer moment with many zero rows); the others decompose the same matrices.
EIGH_SOLVERS: tuple[tuple[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]], ...] = (
    ("torch.linalg.eigh", _eigh_torch),
    ("scipy.linalg.eigh(driver=evr)", _eigh_scipy),
    ("torch.linalg.svd", _eigh_svd),
    ("torch.linalg.eigh with diagonal jitter", _eigh_jitter),
)
EIGH_JITTER = 1e-12


def symmetric_eigh(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric PSD matrix, falling back through
    :data:`EIGH_SOLVERS` when a LAPACK routine fails to converge; raises only if every solver fails."""
    errors = []
    for name, solve in EIGH_SOLVERS:
        try:
            lam, vecs = solve(m)
        except (RuntimeError, ValueError, ArithmeticError) as exc:  # torch.linalg.LinAlgError, scipy LinAlgError
            errors.append(f"{name}: {exc}")
            continue
        if torch.isfinite(lam).all() and torch.isfinite(vecs).all():
            return lam, vecs
        errors.append(f"{name}: non-finite result")
    raise torch.linalg.LinAlgError(
        f"every eigen-decomposition of the {tuple(m.shape)} moment matrix failed: " + "; ".join(errors)
    )


def flat_spectrum(moment: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of the symmetric PSD ``moment``: (T, eigenvalues descending, Sigma descending)."""
    if moment.dim() != 2 or moment.shape[0] != moment.shape[1]:
        raise ValueError(f"moment must be a square matrix, got shape {tuple(moment.shape)}")
    m = moment.detach().to(torch.float64)
    m = 0.5 * (m + m.T)
    lam, vecs = symmetric_eigh(m)  # ascending
    lam = lam.clamp_min(0.0).flip(0)
    vecs = vecs.flip(1)
    lam_max, lam_min = lam[0], lam[-1]
    span = lam_max - lam_min
    if span <= DEGENERATE_RTOL * max(float(lam_max), 1e-300):
        # Degenerate spectrum: every direction is equally sharp, Eq. 4 is 0/0; no direction is damped.
        sigma = torch.ones_like(lam)
        t = torch.eye(m.shape[0], dtype=torch.float64, device=m.device)
    else:
        sigma = torch.exp(-tau * (lam - lam_min) / span)
        t = (vecs * sigma) @ vecs.T
        t = 0.5 * (t + t.T)
    return t.to(moment.dtype), lam.to(moment.dtype), sigma.to(moment.dtype)


def flat_modification_matrix(moment: torch.Tensor, tau: float) -> torch.Tensor:
    """IGM Eq. 4: ``T = V exp(-tau (Lambda - lambda_min) / (lambda_max - lambda_min)) V^T`` of ``moment``.

    Symmetric, eigenvalues in [exp(-tau), 1]: the directions in which the other modality's inputs are largest
    (sharpest) are damped most. ``T = I`` when all eigenvalues are equal (explicit guard, see module doc).
    """
    return flat_spectrum(moment, tau)[0]


def input_moment(module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """One batch's contribution to the moment matrix of ``module``'s input (official ``update_cov``).

    Linear: ``xbar^T xbar`` with ``xbar`` the batch mean of the (B, d) input (for (B, L, d) inputs the batch
    mean is (L, d) and its L outer products are summed). Conv2d: the batch-mean input (1, C, H, W) is unfolded
    into (L, C*k*k) patches P and ``P^T P`` is returned (Adam-NSCL style, as the code's ``compute_cov``).
    """
    x = upcast(inp.detach())
    if isinstance(module, nn.Linear):
        xbar = x.mean(dim=0).reshape(-1, module.in_features)
    elif isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ValueError("gradient modification of grouped convolutions is not supported; lower method.gm_scope")
        mean = x.mean(dim=0, keepdim=True)
        if isinstance(module.padding, str):
            raise ValueError("gradient modification needs numeric conv padding; lower method.gm_scope")
        cols = F.unfold(mean, module.kernel_size, module.dilation, module.padding, module.stride)  # (1, Ckk, L)
        xbar = cols[0].T
    else:  # pragma: no cover - guarded by gm_layer_names
        raise TypeError(f"no moment for {type(module).__name__}")
    xbar = xbar.to(torch.float64)
    return xbar.T @ xbar


def modify_gradient_(weight: nn.Parameter, t: torch.Tensor) -> None:
    """``grad <- grad @ T`` in PyTorch's (out, in) layout (= the paper's ``T grad`` in (in, out) layout).

    Conv2d weights (C_out, C_in, k, k) are reshaped to (C_out, C_in*k*k) first. Biases are never modified.
    """
    if weight.grad is None:
        return
    g = weight.grad
    weight.grad = (g.reshape(g.shape[0], -1) @ t.to(g.dtype)).reshape(g.shape)


def sam_gradients(
    params: Sequence[torch.Tensor], loss_fn: Callable[[], torch.Tensor], rho: float
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Textbook SAM (Foret et al. 2021; IGM Eq. 7-8): the gradient at ``theta + rho g/||g||_2`` (global norm).

    ``loss_fn`` recomputes the whole forward pass. Returns (loss at theta, gradients at the perturbed point);
    the parameters are restored exactly (copied back, not subtracted) before returning (:func:`sam_ascent`).
    """
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with sam_ascent(params, grads, rho):
        perturbed_loss = loss_fn()
        perturbed_grads = list(torch.autograd.grad(perturbed_loss, params, allow_unused=True))
    return loss.detach(), perturbed_grads


def mean_softmax_fusion(logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Official fusion: the mean of the modalities' softmax, returned as its log (so softmax gives it back)."""
    probs = torch.stack([torch.softmax(upcast(v), dim=1) for v in logits.values()]).mean(0)
    return probs.clamp_min(1e-12).log()


def entropy_weighted_fusion(logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """MLA's entropy-gated fusion (the paper's "same weighting strategy as MLA"), per sample.

    For sample i and modality m: ``H_m(i) = -sum_c p log p`` of ``softmax(logits_m(i))`` over classes;
    ``w_m(i) = exp(max_j H_j(i) - H_m(i)) / sum_k exp(max_j H_j(i) - H_k(i))`` (= softmax of -H over
    modalities); fused logits ``sum_m w_m(i) logits_m(i)``. MLA's code computes one entropy per test batch
    (softmax over the batch dimension); per-sample weights make predictions independent of batch composition.
    """
    per_modality = list(logits.values())
    return fuse_logits(per_modality, entropy_fusion_weights(per_modality, per_sample=True))


MixupDraw = Callable[[int, float], tuple[float, torch.Tensor]]


def beta_permutation_draw(batch_size: int, alpha: float) -> tuple[float, torch.Tensor]:
    """The random part of mixup: ``lam ~ Beta(alpha, alpha)``, then a permutation of the batch (the official
    ``mixup_data`` draws in this order, ``lam`` from numpy's global RNG; here both come from torch's)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return lam, torch.randperm(batch_size)


def mixup(
    x: torch.Tensor, alpha: float, draw: MixupDraw = beta_permutation_draw
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Official ``mixup_data`` (``utils/utils.py``): ``lam x + (1 - lam) x[perm]`` with ``(lam, perm) = draw(B,
    alpha)``; ``alpha <= 0`` = no mixup (nothing drawn). ``draw`` is the seam through which the golden test
    feeds the released code's recorded draws."""
    if alpha <= 0:
        return x, torch.arange(x.shape[0], device=x.device), 1.0
    lam, perm = draw(x.shape[0], alpha)
    perm = perm.to(x.device)
    return lam * x + (1 - lam) * x[perm], perm, lam


@dataclass(frozen=True)
class Stage:
    index: int
    modality: str
    start: int  # first epoch (0-based)
    epochs: int

    @property
    def end(self) -> int:  # last epoch (0-based)
        return self.start + self.epochs - 1


def stage_schedule(epochs: int, order: Sequence[str], stage_epochs: Sequence[int] = (), cycles: int = 2) -> list[Stage]:
    """The stages: ``stage_epochs[k]`` epochs of modality ``order[k % len(order)]``.

    With no ``stage_epochs`` the ``epochs`` are divided automatically: ``cycles`` passes over the modalities
    (fewer if there are not enough epochs), equal shares, the remainder going to the later modalities of each
    cycle first (the official audio-visual and image-text configs give the first modality the shorter stage).
    E.g. 6 epochs, audio->visual: [1, 2, 1, 2].
    """
    m = len(order)
    if not stage_epochs:
        n = min(max(1, cycles) * m, epochs)
        base, rest = divmod(epochs, n)
        extra = sorted(range(n), key=lambda k: (k % m == 0, k))[:rest]
        stage_epochs = [base + (k in extra) for k in range(n)]
    if any(e < 1 for e in stage_epochs):
        raise ValueError(f"method.stage_epochs must be positive, got {list(stage_epochs)}")
    if sum(stage_epochs) != epochs:
        raise ValueError(
            f"method.stage_epochs={list(stage_epochs)} sums to {sum(stage_epochs)} epochs but train.epochs={epochs}; "
            f"set train.epochs={sum(stage_epochs)}, or method.stage_epochs= (empty) to divide train.epochs "
            "automatically"
        )
    stages, start = [], 0
    for k, e in enumerate(stage_epochs):
        stages.append(Stage(k, order[k % m], start, int(e)))
        start += e
    return stages


# ---------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------


class MieHead(nn.Module):
    """``[fc0 = Linear(D, D_ref)] -> fc1 = Linear(D_ref, 256) -> ReLU -> fc2 = Linear(256, 64) -> fc3 = Linear(64, C)``
    (``hidden`` = (256, 64), IGM §4.2 and ``models/AudioVideo.py``; smaller only in tests).

    No nonlinearity between fc2 and fc3 (as in the paper and code). ``fc0`` exists only when this modality's
    feature size differs from the first modality's (the official image head's ``Linear(1000, 768)``), so that
    fc1-fc3 have the same shapes in every modality and can be matched for gradient modification.
    """

    def __init__(
        self, in_dim: int, num_classes: int, ref_dim: int | None = None, hidden: tuple[int, int] = (256, 64)
    ) -> None:
        super().__init__()
        ref = ref_dim or in_dim
        self.fc0 = nn.Linear(in_dim, ref) if ref != in_dim else None
        self.fc1 = nn.Linear(ref, hidden[0])
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc0 is not None:
            x = self.fc0(x)
        return self.fc3(self.fc2(self.relu(self.fc1(x))))


class MieModel(nn.Module):
    """One encoder and one head per modality; ``forward`` fuses the heads' outputs (``fusion``)."""

    def __init__(
        self,
        encoders: nn.ModuleDict,
        num_classes: int,
        fusion: str = "mean_softmax",
        head_dims: tuple[int, int] = (256, 64),
    ) -> None:
        super().__init__()
        self.encoders = encoders
        self.modalities = tuple(encoders.keys())
        ref = int(encoders[self.modalities[0]].out_dim)
        self.heads = nn.ModuleDict(
            {m: MieHead(int(e.out_dim), num_classes, ref, tuple(head_dims)) for m, e in encoders.items()}
        )
        self.fusion = fusion

    def branch(self, modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoders[modality](x)
        return feat, self.heads[modality](feat)

    def forward(self, batch: Batch) -> ModelOutput:
        feats, logits = {}, {}
        for m in self.modalities:
            feats[m], logits[m] = self.branch(m, batch[m])
        fuse = entropy_weighted_fusion if self.fusion == "entropy" else mean_softmax_fusion
        return ModelOutput(logits=fuse(logits), features=feats, unimodal_logits=logits)

    def modality_modules(self, modality: str) -> list[tuple[str, nn.Module]]:
        """The modality's Linear/Conv2d layers, shallow to deep, named ``fc1``.. (head) or ``encoder.<path>``."""
        out = [(f"encoder.{n}", mod) for n, mod in self.encoders[modality].named_modules()]
        out += [(n, mod) for n, mod in self.heads[modality].named_children()]
        return [(n, mod) for n, mod in out if isinstance(mod, (nn.Linear, nn.Conv2d))]

    def modality_parameters(self, modality: str) -> list[nn.Parameter]:
        return [*self.encoders[modality].parameters(), *self.heads[modality].parameters()]


# ---------------------------------------------------------------------------------------------------------
# Method
# ---------------------------------------------------------------------------------------------------------

_AV_SGD = {
    "train.optimizer": "sgd",
    "train.lr": 1e-2,
    "train.momentum": 0.9,
    "train.weight_decay": 1e-4,
    "train.batch_size": 12,
    # Official StepLR(40, 0.1) is stepped *before* each epoch; our trainer steps after it, so 39 gives the
    # same learning rates (1e-3 from the 40th epoch of a stage, index 39).
    "train.scheduler": "step",
    "train.step_size": 39,
    "train.gamma": 0.1,
    "method.tau": 0.4,
    "method.flat_ratio": 0.3,
    "method.mixup_alpha": 1.0,
}
_TEXT_IMAGE_ADAM = {
    # WarmupMultiStepLR with milestones [160, 180] that a 40-epoch run never reaches: only the warm-up acts.
    **recipe("igm_image_text_adam"),
    "method.warmup_epochs": 2,
    "method.tau": 0.4,
    "method.rho": 1e-15,
    "method.flat_ratio": 0.3,
    "method.mixup_modalities": ("image",),
}


@register_method(aliases=("igm",))
class Mie(Method):
    """MIE/IGM: alternating unimodal stages + flat gradient modification from the previous modality + SAM."""

    name = "mie"
    display = "IGM"
    paper_row = 15
    proposed = True
    ablation = {"SAM": True, "GM": True}

    @dataclass
    class Config(MethodConfig):
        # "official": released code (mixup + 0.3 perturbed-head CE, per-tensor never-undone perturbation, mean of
        # softmax, restart each stage from the best checkpoint); "paper": textbook SAM, entropy fusion, no restart.
        variant: Literal["official", "paper"] = "official"
        # Temperature of Sigma = exp(-tau * normalised eigenvalues) (Eq. 4); paper: 0.4 on every dataset.
        tau: float = 0.4
        # SAM radius (Eq. 7); official: 1e-10 audio-visual, 1e-15 image-text and NVGesture.
        rho: float = 1e-10
        use_sam: bool = True
        use_gm: bool = True
        # Share of the modality's parameters whose gradients are modified, taken from deep to shallow layers
        # (Linear and Conv2d weights); None = the three head layers only (paper default, "1.3%" on CREMA-D).
        gm_scope: float | None = None
        # Position (in stage_order) of a modality whose T is never applied (Table 3 ablations); -1 = none.
        gm_skip_source: int = -1
        # Epochs of each stage; empty = divide train.epochs automatically (see stage_schedule).
        stage_epochs: tuple[int, ...] = ()
        # Modality order of a cycle; empty = the dataset's order.
        stage_order: tuple[str, ...] = ()
        # Official variant: weight of the perturbed-head CE term; mixup Beta(alpha, alpha) (0 = no mixup), on
        # the listed modalities only (empty = all).
        flat_ratio: float = 0.3
        mixup_alpha: float = 1.0
        mixup_modalities: tuple[str, ...] = ()
        # Checkpoint each stage restarts from: "auto" = "val" (official variant) / "none" (paper variant);
        # "test_official" = best on the test split, as the released code does (test-set selection, leaky).
        restart_select: Literal["auto", "val", "test_official", "none"] = "auto"
        # Linear learning-rate warm-up over the first epochs of each stage, from warmup_factor (image-text code).
        warmup_epochs: int = 0
        warmup_factor: float = 1.0 / 3.0
        # Keep the cosine between successive modalities' head gradients (Figure 1); cheap.
        track_grad_cosine: bool = True
        # Output sizes of every head's fc1 and fc2 (IGM §4.2: 256, 64); the golden test uses smaller heads.
        head_dims: tuple[int, int] = (256, 64)

        def validate(self) -> None:
            if self.tau <= 0:
                raise ValueError(f"method.tau must be > 0, got {self.tau}")
            if self.rho < 0:
                raise ValueError(f"method.rho must be >= 0, got {self.rho}")
            if not 0 <= self.flat_ratio <= 1:
                raise ValueError(f"method.flat_ratio must be in [0, 1], got {self.flat_ratio}")
            if self.gm_scope is not None and not 0 <= self.gm_scope <= 1:
                raise ValueError(f"method.gm_scope must be in [0, 1] or none (head only), got {self.gm_scope}")
            if self.mixup_alpha < 0:
                raise ValueError(f"method.mixup_alpha must be >= 0, got {self.mixup_alpha}")
            if len(self.head_dims) != 2 or any(int(d) < 1 for d in self.head_dims):
                raise ValueError(f"method.head_dims must be two positive sizes (fc1, fc2), got {self.head_dims}")

    dataset_defaults = {
        # The embedded dataset: 19 steps per epoch at batch 64 are too few for the deep per-modality heads, so
        # batch 16 (the official code trains with 12); its stages last 1-2 epochs, too short for a new modality
        # to lift the fused validation accuracy, so restarting from the best checkpoint would discard every
        # stage: no restart here (the paper datasets keep the official restart, selected on validation).
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # method.tau in (0.4, 1.3) x train.lr in (0.003, 0.01, 0.03).
        # (The ablations inherit these: an ablation changes one component, nothing else.)
        "av_digits": {"train.batch_size": 16, "method.restart_select": "none", "method.tau": 1.3, "train.lr": 0.01},
        "crema_d": {
            **_AV_SGD,
            "method.rho": 1e-10,
            "method.stage_epochs": (25, 50) * 6,
            "train.epochs": 450,
            "train.select_metric": "macro_f1",
        },
        "kinetics_sounds": {
            **_AV_SGD,
            "method.rho": 1e-10,
            "method.stage_epochs": (25, 50, 25, 50),
            "train.epochs": 150,
            "train.select_metric": "macro_f1",
        },
        "twitter2015": {
            **_TEXT_IMAGE_ADAM,
            "method.mixup_alpha": 0.9,
            "method.stage_epochs": (10, 30, 10, 30),
            "train.epochs": 80,
            "train.select_metric": "acc",
        },
        "sarcasm": {
            **_TEXT_IMAGE_ADAM,
            "method.mixup_alpha": 1.0,
            "method.stage_epochs": (2, 30, 2, 30),
            "train.epochs": 64,
            "train.select_metric": "macro_f1",
        },
        "nvgesture": {
            **_AV_SGD,
            "train.batch_size": 6,
            "method.rho": 1e-15,
            "method.stage_epochs": (50,) * 6,
            "method.stage_order": ("depth", "rgb", "flow"),
            "train.epochs": 300,
            "train.select_metric": "macro_f1",
        },
    }

    # -- set-up ----------------------------------------------------------------------------------------
    def __init__(self, cfg: Any, ctx: Any) -> None:
        super().__init__(cfg, ctx)
        info = ctx.info
        order = tuple(cfg.stage_order) or tuple(info.modalities)
        if sorted(order) != sorted(info.modalities):
            raise ValueError(
                f"method.stage_order={list(order)} must name each modality of {info.name!r} once: "
                f"{', '.join(info.modalities)}"
            )
        unknown = set(cfg.mixup_modalities) - set(info.modalities)
        if unknown:
            raise ValueError(f"method.mixup_modalities names {sorted(unknown)}, not modalities of {info.name!r}")
        self.order = order
        self.stages = stage_schedule(ctx.config.train.epochs, order, cfg.stage_epochs)
        self.restart = (
            cfg.restart_select if cfg.restart_select != "auto" else ("val" if cfg.variant == "official" else "none")
        )
        self._stage = 0
        self.T: dict[str, torch.Tensor] = {}  # layer name -> T built from the previous stage's modality
        self._best_value = -math.inf
        self._best_state: dict[str, torch.Tensor] | None = None
        self._prev_grad: torch.Tensor | None = None  # mean head-weight gradient of the previous stage's last epoch
        self._grad_sum: torch.Tensor | None = None
        self._grad_n = 0
        self._cos: list[torch.Tensor] = []  # per step: (cosine after T, cosine before), on the device
        # mixup's (lam, permutation) source; the golden test replaces it with the released code's draws.
        self.mixup_draw: MixupDraw = beta_permutation_draw
        self._art: dict[str, Any] = {
            "stages": [],
            "initial": {},
            "singular_values": {},
            "grad_cosine": [],
            "schedule": [{"stage": s.index, "modality": s.modality, "epochs": s.epochs} for s in self.stages],
            "t_build": [],
            "gm_layers": {},
        }

    @classmethod
    def label(cls, cfg: Any) -> str:
        return cls.name if cfg.variant == "official" else f"{cls.name}[paper]"

    def build_model(self) -> nn.Module:
        info, mcfg = self.ctx.info, self.ctx.config.model
        encoders = nn.ModuleDict({m: build_encoder(info, mcfg, m) for m in info.modalities})
        fusion = "mean_softmax" if self.cfg.variant == "official" else "entropy"
        return MieModel(encoders, info.num_classes, fusion, tuple(self.cfg.head_dims))

    def stage_of(self, epoch: int) -> Stage:
        for s in self.stages:
            if s.start <= epoch <= s.end:
                return s
        raise IndexError(f"epoch {epoch} is outside the schedule")

    @property
    def stage(self) -> Stage:
        return self.stages[self._stage]

    def _stage_optimizers(self) -> tuple[torch.optim.Optimizer, Any]:
        """A fresh optimiser and scheduler over the current modality's parameters only (official: per stage)."""
        params = self.model.modality_parameters(self.stage.modality)
        opt = build_optimizer(params, self.ctx.train)
        if self.cfg.warmup_epochs > 0:
            if self.ctx.train.scheduler != "none":
                raise ValueError("method.warmup_epochs > 0 needs train.scheduler=none (warm-up replaces it)")
            w, f0 = self.cfg.warmup_epochs, self.cfg.warmup_factor

            def factor(e: int) -> float:
                return f0 * (1 - e / w) + e / w if e < w else 1.0

            return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return opt, build_scheduler(opt, self.ctx.train, epochs=self.stage.epochs)

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, Any]:
        return self._stage_optimizers()

    def setup(self) -> None:
        self._art["initial"] = self._evaluate()

    # -- gradient-modification layers -------------------------------------------------------------------
    def gm_layer_names(self, modality: str) -> list[str]:
        """Layers of ``modality`` whose weight gradients are modified (``gm_scope``, deep to shallow)."""
        if not self.cfg.use_gm:
            return []
        layers = self.model.modality_modules(modality)
        if self.cfg.gm_scope is None:
            return [n for n, _ in layers if n in ("fc1", "fc2", "fc3")]
        total = sum(p.numel() for p in self.model.modality_parameters(modality))
        budget, chosen, used = self.cfg.gm_scope * total, [], 0
        for n, mod in reversed(layers):
            if used >= budget:
                break
            chosen.append(n)
            used += sum(p.numel() for p in mod.parameters(recurse=False))
        return chosen[::-1]

    def _matched_layers(self, current: str, source: str) -> dict[str, tuple[nn.Module, nn.Module]]:
        """name -> (current modality's layer, source modality's layer) for layers of identical weight shape."""
        cur = dict(self.model.modality_modules(current))
        src = dict(self.model.modality_modules(source))
        out = {}
        for n in self.gm_layer_names(current):
            if n in src and src[n].weight.shape == cur[n].weight.shape:
                out[n] = (cur[n], src[n])
        return out

    @torch.no_grad()
    def layer_moments(self, modality: str, names: Iterable[str], epoch: int = 0) -> dict[str, torch.Tensor]:
        """One pass over the training data through ``modality``'s branch (eval mode, no mixup, no grad):
        ``sum_batches`` of each named layer's input moment (Eq. 2; official ``compute_cov``)."""
        modules = dict(self.model.modality_modules(modality))
        moments: dict[str, torch.Tensor] = {}
        handles = []
        for n in names:
            mod = modules[n]

            def hook(module: nn.Module, args: tuple, n: str = n) -> None:
                add = input_moment(module, args[0])
                moments[n] = add if n not in moments else moments[n] + add

            handles.append(mod.register_forward_pre_hook(hook))
        try:
            with eval_mode(self.model):
                loader = self.ctx.loader("train", shuffle=True, epoch=epoch, drop_last=True)
                for batch in self.ctx.batches(loader, self.ctx.train.max_steps_per_epoch):
                    with self.autocast():
                        self.model.branch(modality, batch[modality])
        finally:
            for h in handles:
                h.remove()
        return moments

    def build_T(self, source: str, current: str, epoch: int) -> None:
        """T of every matched layer from ``source`` (the previous stage's modality), for ``current``."""
        self.T = {}
        pos = self.order.index(source)
        if not self.cfg.use_gm or pos == self.cfg.gm_skip_source:
            return
        matched = self._matched_layers(current, source)
        t0 = time.perf_counter()
        moments = self.layer_moments(source, list(matched), epoch)
        t1 = time.perf_counter()
        svals: dict[str, list[float]] = {}
        for n, mom in moments.items():
            t, lam, _ = flat_spectrum(mom, self.cfg.tau)
            self.T[n] = t.to(self.device, matched[n][0].weight.dtype)
            svals[n] = [float(v) for v in lam]
        t2 = time.perf_counter()
        self._art["singular_values"][source] = svals
        self._art["gm_layers"][current] = list(matched)
        self._art["t_build"].append(
            {"stage": self._stage, "source": source, "moment_pass_s": t1 - t0, "decomposition_s": t2 - t1}
        )

    # -- stages ----------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        stage = self.stage_of(epoch)
        if stage.index != self._stage:
            self._begin_stage(stage, epoch)
        self._grad_sum, self._grad_n, self._cos = None, 0, []

    def _begin_stage(self, stage: Stage, epoch: int) -> None:
        previous = self.stages[stage.index - 1].modality
        if self.restart != "none" and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        self._stage = stage.index
        self.build_T(previous, stage.modality, epoch)
        self.optimizer, self.scheduler = self._stage_optimizers()

    def _head_grad(self, modality: str) -> torch.Tensor | None:
        head = self.model.heads[modality]
        gs = [getattr(head, n).weight.grad for n in ("fc1", "fc2", "fc3")]
        if any(g is None for g in gs):
            return None
        return torch.cat([g.reshape(-1) for g in gs]).detach()

    def _apply_gm(self, modality: str) -> None:
        """Right-multiply each modified layer's weight gradient by its T (Eq. 9), then log the cosine."""
        raw = self._head_grad(modality) if self.cfg.track_grad_cosine else None
        modules = dict(self.model.modality_modules(modality))
        for n, t in self.T.items():
            modify_gradient_(modules[n].weight, t)
        if raw is None:
            return
        final = self._head_grad(modality)
        if self._prev_grad is not None and self._prev_grad.shape == final.shape:
            # kept on the device (no host sync per step), read once in on_epoch_end
            prev = self._prev_grad
            self._cos.append(torch.stack([F.cosine_similarity(v, prev, dim=0) for v in (final, raw)]))
        self._grad_sum = final.clone() if self._grad_sum is None else self._grad_sum + final
        self._grad_n += 1

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        m = self.stage.modality
        y = batch["label"]
        params = self.model.modality_parameters(m)
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.variant == "official":
            loss = self._official_loss(batch[m], y, m, params)
            loss.backward()
        else:
            loss = self._paper_gradients(batch[m], y, m, params)
        self._apply_gm(m)
        self.optimizer.step()
        return {"loss": loss.detach()}

    def _official_loss(self, x: torch.Tensor, y: torch.Tensor, m: str, params: list[nn.Parameter]) -> torch.Tensor:
        """``(1-r) mixup-CE + r CE(head_perturbed(f), y)`` (official ``train_withP``/``train_withoutP``)."""
        use_mix = not self.cfg.mixup_modalities or m in self.cfg.mixup_modalities
        x, perm, lam = mixup(x, self.cfg.mixup_alpha if use_mix else 0.0, self.mixup_draw)
        with self.autocast():
            feat, logits = self.model.branch(m, x)
            loss_ori = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
        if not self.cfg.use_sam:
            return loss_ori
        grads = torch.autograd.grad(loss_ori, params, retain_graph=True, allow_unused=True)
        # Rebinding, as the code does: the graph of ``loss_ori`` keeps the unperturbed nn.Linear weights (head),
        # while its conv/BatchNorm weights (encoder) are read perturbed in the backward pass; ``loss_tmp`` is the
        # perturbed head on the unperturbed features (``train_CREMA.py`` 96-122; docs/methods/mie.md).
        perturb_per_tensor_(params, grads, self.cfg.rho)
        with self.autocast():
            loss_tmp = F.cross_entropy(self.model.heads[m](feat), y)
        r = self.cfg.flat_ratio
        return (1 - r) * loss_ori + r * loss_tmp

    def _paper_gradients(self, x: torch.Tensor, y: torch.Tensor, m: str, params: list[nn.Parameter]) -> torch.Tensor:
        """Textbook SAM (Eq. 7-8) with plain CE; gradients written to ``.grad``; returns the loss at theta."""

        def loss_fn() -> torch.Tensor:
            with self.autocast():
                return F.cross_entropy(self.model.branch(m, x)[1], y)

        if not self.cfg.use_sam:
            loss = loss_fn()
            loss.backward()
            return loss.detach()
        loss, grads = sam_gradients(params, loss_fn, self.cfg.rho)
        for p, g in zip(params, grads):
            p.grad = g
        return loss

    def on_epoch_end(self, epoch: int) -> None:
        stage = self.stage
        if self._cos:
            cos = torch.stack(self._cos).float().cpu()  # float32, as the Python floats' tensor was
            self._art["grad_cosine"].append(
                {
                    "stage": stage.index,
                    "epoch": epoch + 1,
                    "modality": stage.modality,
                    "cosine": float(cos[:, 0].mean()),
                    "cosine_raw": float(cos[:, 1].mean()),
                    "cosine_min": float(cos[:, 0].min()),
                    "cosine_max": float(cos[:, 0].max()),
                    "steps": len(cos),
                }
            )
        if epoch == stage.end and self._grad_n:
            self._prev_grad = self._grad_sum / self._grad_n
        if epoch == self.stages[-1].end:
            # Figure 5a: singular values of every modality's head-layer moments on the final model.
            for mod in self.order:
                names = [n for n, _ in self.model.modality_modules(mod) if n in ("fc1", "fc2", "fc3")]
                moms = self.layer_moments(mod, names, epoch)
                svals = {n: [float(v) for v in flat_spectrum(moms[n], 1.0)[1]] for n in names}
                self._art["singular_values"].setdefault(mod, {}).update(svals)

    # -- evaluation ------------------------------------------------------------------------------------
    def predict(self, batch: Batch) -> ModelOutput:
        return self.forward(batch)

    def _evaluate(self) -> dict[str, float]:
        """Accuracy of the untrained model (Table 3's "Initial" column) on val and test, by the trainer's own
        evaluation (``predict`` is ``forward`` here)."""
        return {f"{split}_acc": evaluate(self, split)["acc"] for split in ("val", "test")}

    def on_evaluation_end(self, epoch: int, metrics: dict[str, dict[str, float]]) -> None:
        if self.restart != "none":
            split = "val" if self.restart == "val" else "test"
            value = metrics[split].get(self.ctx.train.select_metric, float("nan"))
            if value > self._best_value:
                self._best_value = value
                self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        stage = self.stage
        if epoch == stage.end:
            row: dict[str, Any] = {"stage": stage.index, "modality": stage.modality, "end_epoch": epoch + 1}
            row["test_acc"], row["val_acc"] = metrics["test"]["acc"], metrics["val"]["acc"]
            for split in ("test", "val"):
                for k, v in metrics[split].items():
                    if k != "acc":
                        row[f"{split}_{k}"] = v
            self._art["stages"].append(row)

    # -- state -----------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "stage": self._stage,
            "T": {k: v.cpu() for k, v in self.T.items()},
            "best_value": self._best_value,
            "best_state": self._best_state,
            "prev_grad": self._prev_grad,
            "artifacts": copy.deepcopy(self._art),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._stage = int(state["stage"])
        self.T = {k: v.to(self.device) for k, v in state["T"].items()}
        self._best_value = state["best_value"]
        self._best_state = state["best_state"]
        self._prev_grad = state["prev_grad"]
        self._art = copy.deepcopy(state["artifacts"])
        # The trainer loads the optimiser state next: it must be this stage's optimiser.
        self.optimizer, self.scheduler = self._stage_optimizers()

    def artifacts(self) -> dict[str, Any]:
        return copy.deepcopy(self._art)


# ---------------------------------------------------------------------------------------------------------
# Ablations (IGM Tables 2 and 3). "a" / "v" = the first / second modality of stage_order (audio / visual on
# the audio-visual sets, text / image on Twitter2015 and Sarcasm, depth / rgb on NVGesture).
# ---------------------------------------------------------------------------------------------------------


@register_method
class MieNoSam(Mie):
    """IGM w/o SAM (Tables 1-2): gradient modification only; official variant: mixup-CE without the 0.3 term."""

    name = "mie_no_sam"
    display = "IGM w/o SAM"
    paper_row = 14
    ablation = {"SAM": False, "GM": True}

    @dataclass
    class Config(Mie.Config):
        use_sam: bool = False


@register_method
class MieNoGm(Mie):
    """IGM w/o GM (Table 2, SAM only): alternating stages with SAM, no gradient modification."""

    name = "mie_no_gm"
    display = "IGM w/o GM"
    paper_row = None
    ablation = {"SAM": True, "GM": False}

    @dataclass
    class Config(Mie.Config):
        use_gm: bool = False


@register_method
class MiePlain(Mie):
    """IGM with neither SAM nor GM (Table 2, first row): alternating unimodal stages with own heads."""

    name = "mie_plain"
    display = "IGM w/o SAM & GM"
    paper_row = None
    ablation = {"SAM": False, "GM": False}

    @dataclass
    class Config(Mie.Config):
        use_sam: bool = False
        use_gm: bool = False


@register_method
class MieNoAGm(Mie):
    """IGM w/o a-GM (Table 3): the first modality's (audio's) T is never applied; only video modifies audio."""

    name = "mie_no_a_gm"
    display = "w/o a-GM"
    paper_row = None
    ablation = {}

    @dataclass
    class Config(Mie.Config):
        gm_skip_source: int = 0


@register_method
class MieNoVGm(Mie):
    """IGM w/o v-GM (Table 3): the second modality's (video's) T is never applied; only audio modifies video."""

    name = "mie_no_v_gm"
    display = "w/o v-GM"
    paper_row = None
    ablation = {}

    @dataclass
    class Config(Mie.Config):
        gm_skip_source: int = 1
