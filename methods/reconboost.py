"""ReconBoost: boosting can achieve modality reconcilement (Hua et al., ICML 2024).

What it does, the official defaults, every difference from the released code and the paper, and the tests:
`docs/methods/reconboost.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import RunConfig
from benchmark.data import Batch
from benchmark.method import Method, MethodConfig, build_optimizer, upcast
from benchmark.models import ModelOutput, UnimodalModel, build_encoder, mlp_head
from benchmark.registry import register_method


def boosting_loss(
    logits: torch.Tensor, others_logits: torch.Tensor, labels: torch.Tensor, w1: float, w2: float
) -> torch.Tensor:
    """Batch mean of ``-w1 mean_c(T * log p) + w2 mean_c(T * q * log p)`` (official ``train.py`` ~339).

    ``p = softmax(logits)`` (the current learner), ``q = softmax(others_logits)`` (the ensemble of the other
    learners, detached), T the one-hot labels; per sample this is ``(-w1 + w2 q_y) log p_y / C``.
    ``others_logits`` of shape (B, 1) is the released empty ensemble (the constant ``c0`` as a (B, 1) column,
    ``train.py`` ~236, ~332): its softmax is 1 and broadcasts over the classes, so ``q_y = 1``.
    """
    q = F.softmax(others_logits.detach(), dim=1)
    q_y = q[:, 0] if q.shape[1] == 1 else q.gather(1, labels.view(-1, 1)).squeeze(1)
    logp_y = F.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    return ((-w1 + w2 * q_y) * logp_y / logits.shape[1]).mean()


class ReconBoostModel(nn.Module):
    """Learners (``UnimodalModel``: encoder + own fc), the shared MLP head and the learnable boost rate.

    Buffers ``uses_head[i]`` (learner i's fc has been replaced by the shared head) and ``member[i]`` (learner i is
    in the ensemble) travel with the state dict, so checkpoints resume mid-schedule.
    """

    def __init__(self, learners: nn.ModuleDict, num_classes: int, boost_rate: float) -> None:
        super().__init__()
        dims = {m: int(lr.encoder.out_dim) for m, lr in learners.items()}
        if len(set(dims.values())) != 1:
            raise ValueError(
                f"ReconBoost shares one head across learners, so every encoder needs the same feature size; got "
                f"{dims}. Choose backbones with equal out_dim (--set model.backbones=...)"
            )
        self.learners = learners
        self.modalities = tuple(learners.keys())
        self.head = mlp_head(next(iter(dims.values())), num_classes, hidden=(256,), relu_after=(True,))
        self.boost_rate = nn.Parameter(torch.tensor(float(boost_rate)))
        self.register_buffer("uses_head", torch.zeros(len(learners), dtype=torch.bool))
        self.register_buffer("member", torch.zeros(len(learners), dtype=torch.bool))

    def index(self, m: str) -> int:
        return self.modalities.index(m)

    def learner_logits(self, m: str, x: torch.Tensor) -> torch.Tensor:
        learner = self.learners[m]
        feat = learner.encoder(x)
        return self.head(feat) if bool(self.uses_head[self.index(m)]) else learner.fc(feat)

    def members(self) -> list[str]:
        return [m for i, m in enumerate(self.modalities) if bool(self.member[i])]

    def forward(self, batch: Batch) -> ModelOutput:
        uni = {m: self.learner_logits(m, batch[m]) for m in self.modalities}
        # Before the first learner joins (scratch start, mid phase 1), the learner being trained stands in.
        names = self.members() or [m for i, m in enumerate(self.modalities) if bool(self.uses_head[i])]
        names = names or list(self.modalities)
        fused = self.boost_rate * torch.stack([uni[m] for m in names]).sum(0)
        return ModelOutput(logits=fused, unimodal_logits=uni)


@register_method
class ReconBoost(Method):
    """ReconBoost: stage-wise alternating boosting of modality learners with global rectification."""

    name = "reconboost"
    display = "ReconBoost"
    paper_row = 9
    # Step time does not depend on the initialisation; timing needs no unimodal runs.
    bench_overrides = {"method.init_from": "scratch"}

    @dataclass
    class Config(MethodConfig):
        # official: the MSE (GA) term is detached (no effect); paper: it carries gradient to the current learner.
        variant: Literal["official", "paper"] = "official"
        w1: float = 5.0
        w2: float = 1.0
        # Weight of the MSE term between the current and the previous learner's softmax (official --alpha).
        alpha: float = 0.5
        # Initial value of the learnable boost rate.
        boost_rate: float = 1.0
        # Epochs of phase 1 (modality learner) and of phase 2 (global rectification) in one stage.
        epochs_per_stage: int = 4
        correct_epoch: int = 4
        # Multiply the learning rate by stage_lr_gamma every stage_lr_step stages (0 = constant).
        stage_lr_step: int = 30
        stage_lr_gamma: float = 0.1
        # "unimodal_runs": learners start from the unimodal method's runs (run first by the runner: requires);
        # "scratch": random initialisation, empty ensemble.
        init_from: Literal["unimodal_runs", "scratch"] = "unimodal_runs"
        # Epochs of those unimodal runs; 0 = the sweep's train.epochs (else the unimodal method's default).
        unimodal_epochs: int = 0

        def validate(self) -> None:
            if self.epochs_per_stage < 1 or self.correct_epoch < 1:
                raise ValueError("method.epochs_per_stage and method.correct_epoch must be >= 1")
            if self.stage_lr_step < 0:
                raise ValueError("method.stage_lr_step must be >= 0 (0 = constant learning rate)")

    # Official README/train.py: bs 64, SGD (0.9, wd 5e-4) lr 0.01 for both phases, re-created each phase.
    dataset_defaults = {
        "*": {
            "train.optimizer": "sgd",
            "train.lr": 0.01,
            "train.momentum": 0.9,
            "train.weight_decay": 5e-4,
            "train.batch_size": 64,
            "train.scheduler": "none",
        },
        # 100 stages x (4 + 4) epochs; the released CREMA-D checkpoint is stage 99 (the code allows 1001 stages).
        "crema_d": {"train.epochs": 800, "method.w1": 5.0, "method.w2": 1.0},
        "kinetics_sounds": {"train.epochs": 800, "method.w1": 5.0, "method.w2": 1.0},
        # Quick suite (6 epochs): three 1 + 1 stages (audio, visual, audio) on the quick suite's unimodal runs.
        # Chosen on validation by the mini_tune grid (benchmark/suites/mini.py, scripts/select_mini.py):
        # method.w1 in (2.0, 5.0) x train.lr in (0.003, 0.01, 0.03).
        "av_digits": {"method.epochs_per_stage": 1, "method.correct_epoch": 1, "method.w1": 2.0, "train.lr": 0.03},
    }

    # -- construction ----------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        info, mcfg = self.ctx.info, self.ctx.config.model
        learners = nn.ModuleDict(
            {m: UnimodalModel(m, build_encoder(info, mcfg, m), info.num_classes) for m in info.modalities}
        )
        return ReconBoostModel(learners, info.num_classes, self.cfg.boost_rate)

    def configure_optimizers(self):
        if self.ctx.train.scheduler != "none":
            raise ValueError(
                "reconboost re-creates its optimisers every stage and decays the LR per stage; set "
                "train.scheduler=none and use method.stage_lr_step / method.stage_lr_gamma"
            )
        return None, None  # built at the start of each phase (on_epoch_start)

    def setup(self) -> None:
        self.phase_key: tuple[int, int] | None = None
        self.stage_log: list[dict[str, Any]] = []
        if self.cfg.init_from == "unimodal_runs":
            self._load_unimodal_learners()

    # -- unimodal initialisation -----------------------------------------------------------------------
    @classmethod
    def requires(cls, config: RunConfig, overrides: dict[str, Any]) -> list:
        """One ``unimodal`` run per modality with the sweep's settings (``overrides`` without ``method.*``), this
        run's ``model.*``/``data.*`` (the weights must fit) and ``train.epochs = method.unimodal_epochs`` if > 0."""
        from benchmark.registry import DATASETS
        from benchmark.suites import RunSpec

        if config.method_cfg.init_from != "unimodal_runs":
            return []
        base = {k: v for k, v in overrides.items() if not k.startswith("method.")}
        for prefix, section in (("model", config.model), ("data", config.data_cfg)):
            if section is not None:
                base.update({f"{prefix}.{f.name}": getattr(section, f.name) for f in fields(section)})
        if config.method_cfg.unimodal_epochs > 0:
            base["train.epochs"] = config.method_cfg.unimodal_epochs
        base["train.save_model"] = True
        info = DATASETS.get(config.dataset)(config.data_cfg).info
        return [
            RunSpec("unimodal", config.dataset, config.seed, {**base, "method.modality": m}) for m in info.modalities
        ]

    def unimodal_config(self, modality: str) -> RunConfig:
        """The ``unimodal`` run (one of ``config.requires``) whose weights initialise ``modality``'s learner."""
        for dep in self.ctx.config.requires:
            if dep.method == "unimodal" and dep.method_cfg.modality == modality:
                return dep
        raise ValueError(
            f"reconboost run {self.ctx.config.run_id} has no unimodal run for {modality!r} in its requires; "
            "build its configuration with benchmark.config.build_config (or set method.init_from=scratch)"
        )

    def _load_unimodal_learners(self) -> None:
        store = self.ctx.store
        if store is None:
            raise ValueError(
                "reconboost with method.init_from=unimodal_runs reads the unimodal runs from a result store; run it "
                "through run_all.py / the runner, or set method.init_from=scratch"
            )
        model: ReconBoostModel = self.model  # type: ignore[assignment]
        for m in self.modalities:
            ucfg = self.unimodal_config(m)
            path = store.run_dir(ucfg.run_id) / "model.pt"
            if store.status(ucfg.run_id) != "ok" or not path.is_file():
                raise RuntimeError(
                    f"reconboost's {m} learner needs the finished unimodal run {ucfg.run_id} ({path} is missing); "
                    "run_all.py trains it first: launch the sweep again (with --retry-failed if it failed)"
                )
            try:
                state = torch.load(path, map_location=self.device, weights_only=True)
            except Exception as exc:
                raise RuntimeError(
                    f"cannot read {path} ({type(exc).__name__}: {exc}); retrain unimodal run {ucfg.run_id} "
                    "(run_all.py ... --methods unimodal --force)"
                ) from None
            model.learners[m].load_state_dict(state)
        # Official --use_pretrain: both learners are ensemble members (with their own fc) before stage 0.
        model.member.fill_(True)

    # -- schedule --------------------------------------------------------------------------------------
    def schedule(self, epoch: int) -> tuple[int, int]:
        """(stage, phase) of a trainer epoch; phase 1 = modality learner, 2 = global rectification."""
        per = self.cfg.epochs_per_stage + self.cfg.correct_epoch
        stage, pos = divmod(epoch, per)
        return stage, (1 if pos < self.cfg.epochs_per_stage else 2)

    def stage_modality(self, stage: int) -> str:
        return self.modalities[stage % len(self.modalities)]

    def stage_lr(self, stage: int) -> float:
        step = self.cfg.stage_lr_step
        return self.ctx.train.lr * (self.cfg.stage_lr_gamma ** (stage // step) if step else 1.0)

    def _build_phase_optimizer(self, stage: int, phase: int) -> None:
        model: ReconBoostModel = self.model  # type: ignore[assignment]
        if phase == 1:
            params = [*model.learners[self.stage_modality(stage)].encoder.parameters(), *model.head.parameters()]
        else:
            params = [p for m in model.members() for p in model.learners[m].encoder.parameters()]
            params += [*model.head.parameters(), model.boost_rate]
        self.optimizer = build_optimizer(params, self.ctx.train, lr=self.stage_lr(stage))
        self.phase_key = (stage, phase)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        key = self.schedule(epoch)
        if key == self.phase_key:
            return
        stage, phase = key
        model: ReconBoostModel = self.model  # type: ignore[assignment]
        idx = model.index(self.stage_modality(stage))
        if phase == 1:
            model.uses_head[idx] = True
        else:
            model.member[idx] = True
        self._build_phase_optimizer(stage, phase)

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        assert self.phase_key is not None
        stage, phase = self.phase_key
        return self._phase1_step(batch, stage) if phase == 1 else self._phase2_step(batch)

    def _phase1_step(self, batch: Batch, stage: int) -> dict[str, float]:
        model: ReconBoostModel = self.model  # type: ignore[assignment]
        m = self.stage_modality(stage)
        y = batch["label"]
        with torch.no_grad(), self.autocast():
            others = {j: upcast(model.learner_logits(j, batch[j])) for j in model.members() if j != m}
        with self.autocast():
            f_m = upcast(model.learner_logits(m, batch[m]))
        if others:
            ens = model.boost_rate.detach() * torch.stack(list(others.values())).sum(0)
        else:  # empty ensemble (scratch, stage 0): the released constant c0 as a (B, 1) column, so q_y = 1
            ens = f_m.new_zeros(f_m.shape[0], 1)
        loss = boosting_loss(f_m, ens, y, self.cfg.w1, self.cfg.w2)
        stats = {"boost_loss": loss.detach()}
        if stage >= 1:
            prev = self.stage_modality(stage - 1)
            # train.py ~348 runs the previous learner once more, in train mode, for the MSE term (its BatchNorm
            # statistics see the batch twice per step, once here and once in the ensemble forward above).
            with torch.no_grad(), self.autocast():
                f_prev = upcast(model.learner_logits(prev, batch[prev]))
            p_cur = F.softmax(f_m, dim=1)
            if self.cfg.variant == "official":
                p_cur = p_cur.detach()
            ga = F.mse_loss(p_cur, F.softmax(f_prev, dim=1))
            loss = loss + self.cfg.alpha * ga
            stats["ga_loss"] = ga.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), **stats}

    def _phase2_step(self, batch: Batch) -> dict[str, float]:
        model: ReconBoostModel = self.model  # type: ignore[assignment]
        with self.autocast():
            logits = model.boost_rate * torch.stack([model.learner_logits(m, batch[m]) for m in model.members()]).sum(0)
            loss = F.cross_entropy(upcast(logits), batch["label"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), "boost_rate": model.boost_rate.detach().clone()}  # (a parameter: copied)

    # -- bookkeeping -----------------------------------------------------------------------------------
    def on_evaluation_end(self, epoch: int, metrics: dict[str, dict[str, float]]) -> None:
        stage, phase = self.schedule(epoch)
        self.stage_log.append(
            {
                "stage": stage,
                "modality": self.stage_modality(stage),
                "phase": phase,
                "end_epoch": epoch + 1,
                "val_acc": metrics["val"].get("acc"),
                **{f"test_{k}": v for k, v in metrics["test"].items() if k == "acc" or k.startswith("acc_")},
            }
        )

    def extra_state(self) -> dict[str, Any]:
        return {"phase_key": self.phase_key, "stage_log": self.stage_log}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.stage_log = list(state.get("stage_log", []))
        if state.get("phase_key") is not None:
            stage, phase = state["phase_key"]
            self._build_phase_optimizer(int(stage), int(phase))

    def artifacts(self) -> dict[str, Any]:
        return {"stages": self.stage_log}
