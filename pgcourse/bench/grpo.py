"""``python -m pgcourse bench grpo``: supervised fine-tuning to partial accuracy, then GRPO.

A tiny GRU language model (:class:`pgcourse.tinylm.TinyLM`) learns to sort 1–5 digits
(:class:`pgcourse.digitsort.DigitSort`): first by SFT on 2,000 demonstrations, stopped early
(partly right), then by GRPO with the verifier's 0/1 reward against a frozen copy of itself.

Accuracy is the exact probability that a sampled answer (temperature 1) is correct, averaged over
512 fixed evaluation prompts; greedy accuracy is printed too. Budget (2-core CPU): accuracy
≥ 0.90 within 60 s of GRPO. Nothing is downloaded.

It runs on one CPU thread: the model's matrices are tiny, and a second thread mostly waits on
the first (on a busy 2-core machine two threads were ten times slower than one).
"""
from __future__ import annotations

import time

import torch

from ..device import seed_everything, torch_threads
from ..digitsort import DigitSort
from ..grpo import GRPOConfig, evaluate, train
from ..tinylm import TinyLM, supervised_finetune

SFT_STEPS = 100
DEMOS = 2000
TARGET = 0.90


@torch_threads(1)
def run(quick: bool = False) -> dict:
    seed_everything(0)
    task = DigitSort(min_len=1, max_len=5)
    policy = TinyLM(task.vocab_size, embed=32, hidden=64)
    demos = task.sample_prompts(DEMOS, seed=1)
    eval_prompts = task.sample_prompts(512, seed=2)
    print(f"task: {task}; policy: TinyLM ({sum(p.numel() for p in policy.parameters())} parameters), "
          f"CPU threads: {torch.get_num_threads()}")

    t0 = time.perf_counter()
    supervised_finetune(policy, demos, task.answers(demos), task.eos, steps=SFT_STEPS, batch_size=128, lr=3e-3, seed=3)
    sft_seconds = time.perf_counter() - t0
    before = evaluate(policy, task, eval_prompts)
    print(f"SFT ({SFT_STEPS} steps on {DEMOS} demonstrations): {sft_seconds:.1f} s; accuracy {before['accuracy']:.3f} "
          f"(greedy {before['greedy_accuracy']:.3f})")

    config = GRPOConfig(steps=40 if quick else 400, eval_every=10 if quick else 20)  # the defaults otherwise
    print(f"GRPO: {config}")
    hist = train(policy, task, config, eval_prompts=eval_prompts, seed=0, progress=False)
    grpo_seconds = hist.seconds[-1]
    reached = next((s for s, a in zip(hist.eval_steps, hist.accuracy) if a >= TARGET), None)
    seconds_to_target = hist.seconds[reached - 1] if reached else None
    after = {"accuracy": hist.accuracy[-1], "greedy_accuracy": hist.greedy_accuracy[-1]}
    print(f"GRPO ({config.steps} steps × {config.prompts_per_step} prompts × {config.group_size} completions): "
          f"{grpo_seconds:.1f} s; accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f} "
          f"(greedy {before['greedy_accuracy']:.3f} -> {after['greedy_accuracy']:.3f}); final KL to reference "
          f"{hist.kl[-1]:.3f}")
    if reached:
        print(f"accuracy ≥ {TARGET:.2f} first at step {reached}, after {seconds_to_target:.1f} s of GRPO "
              f"(budget 60 s on a 2-core CPU)")
    else:
        print(f"accuracy did not reach {TARGET:.2f} in {config.steps} steps")
    return {
        "accuracy_before": round(before["accuracy"], 4),
        "accuracy_after": round(after["accuracy"], 4),
        "greedy_accuracy_before": round(before["greedy_accuracy"], 4),
        "greedy_accuracy_after": round(after["greedy_accuracy"], 4),
        "sft_seconds": round(sft_seconds, 2),
        "grpo_seconds": round(grpo_seconds, 2),
        "grpo_steps": config.steps,
        "steps_to_target": reached,
        "seconds_to_target": None if seconds_to_target is None else round(seconds_to_target, 2),
        "kl_to_reference": round(hist.kl[-1], 4),
    }
