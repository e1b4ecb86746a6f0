"""Every hyper-parameter of GRPO in one place (CleanRL style): :class:`GRPOConfig`."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..validate import one_of, positive_float, positive_int
from .loss import LOSS_TYPES

BASELINES = ("group_mean", "leave_one_out", "none")
KL_PENALTIES = ("loss_k3", "reward_k1")


@dataclass
class GRPOConfig:
    """Every hyper-parameter of :func:`train`, in one place (CleanRL style)."""

    steps: int = 200                 # rollout batches
    prompts_per_step: int = 32       # B prompts per batch
    group_size: int = 8              # G completions per prompt
    epochs: int = 2                  # μ: gradient steps on each batch (old_logp = the sampling policy)
    microbatch_size: int | None = None   # rows per backward (None: the whole batch); the gradient is the same
    lr: float = 1e-3
    warmup_steps: int = 5            # the learning rate ramps up linearly over these first steps
    anneal_lr: bool = True           # then decays linearly to 0 at the last step
    clip_eps: float = 0.2
    beta: float = 0.04               # weight of the KL to the reference
    kl_penalty: str = "loss_k3"      # "loss_k3" (β·k3 per token in the loss) | "reward_k1" (r − β·Σ k1)
    loss_type: str = "grpo"          # "grpo" | "bnpo" | "dr_grpo"
    baseline: str = "group_mean"     # "group_mean" (GRPO) | "leave_one_out" (RLOO) | "none" (A = r)
    scale_rewards: bool = True       # divide by the group's std (+ 1e-4)
    dynamic_sampling: bool = False   # drop zero-variance groups and refill (DAPO)
    max_refills: int = 4
    format_bonus: float = 0.0        # training reward = verifier + format_bonus · well_formed
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    eval_every: int = 10
    eval_k: int = 8                  # pass@k's k

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size", "epochs", "eval_every", "warmup_steps", "eval_k"):
            setattr(self, name, positive_int(getattr(self, name), name))
        if self.microbatch_size is not None:
            self.microbatch_size = positive_int(self.microbatch_size, "microbatch_size")
        if isinstance(self.max_refills, bool) or not isinstance(self.max_refills, int) or self.max_refills < 0:
            raise ValueError(f"max_refills must be a non-negative int, got {self.max_refills!r}")
        for name in ("lr", "clip_eps", "max_grad_norm", "temperature"):
            setattr(self, name, positive_float(getattr(self, name), name))
        for name in ("beta", "format_bonus"):
            setattr(self, name, positive_float(getattr(self, name), name, allow_zero=True))
        for name in ("anneal_lr", "scale_rewards", "dynamic_sampling"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        one_of(self.loss_type, "loss_type", LOSS_TYPES)
        one_of(self.baseline, "baseline", BASELINES)
        one_of(self.kl_penalty, "kl_penalty", KL_PENALTIES)
        if self.group_size < 2 and (self.scale_rewards or self.baseline != "none"):
            raise ValueError("group_size must be at least 2 for a group baseline or std scaling")

    def replace(self, **changes) -> "GRPOConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown GRPOConfig field(s): {sorted(unknown)}")
        return GRPOConfig(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})

    @property
    def loss_beta(self) -> float:
        """β of the k3 term in the loss: ``beta`` with ``kl_penalty="loss_k3"``, 0 when the KL is a reward penalty."""
        return self.beta if self.kl_penalty == "loss_k3" else 0.0
