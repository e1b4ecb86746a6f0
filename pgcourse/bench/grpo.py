"""``python -m pgcourse bench grpo``: supervised fine-tuning to partial accuracy, then GRPO.

A tiny causal transformer (:class:`pgcourse.transformer.TinyTransformer`) learns to sort 1–5 digits
(:class:`pgcourse.digitsort.DigitSort`): first by SFT on 2,000 demonstrations, stopped early
(partly right), then by GRPO with the verifier's 0/1 reward against a frozen copy of itself
(:class:`pgcourse.grpo.GRPOConfig`'s defaults: 32 prompts × 8 completions, 2 epochs per batch).

Accuracy is the exact probability that a sampled answer (temperature 1) is correct, averaged over
512 fixed evaluation prompts (pass@1, no sampling noise); greedy accuracy and pass@8 are printed
too. Budget (2-core CPU): GRPO lifts accuracy by ≥ 0.4 absolute, to ≥ 0.90, within 60 s. Wall
seconds and CPU seconds (user + sys of this process) are both reported: on a shared machine the
wall clock counts other people's work. Nothing is downloaded.

It runs on one CPU thread: the model's matrices are tiny, and a second thread mostly waits on
the first (on a busy 2-core machine two threads were ten times slower than one).
"""
from __future__ import annotations

import time

import torch

from ..device import seed_everything, torch_threads
from ..digitsort import DigitSort
from ..grpo import GRPOConfig, evaluate, train
from ..grpo.pretrain import DEMOS, SFT_STEPS, pretrained_policy

TARGET = 0.90
LIFT = 0.40


@torch_threads(1)
def run(quick: bool = False) -> dict:
    seed_everything(0)
    task = DigitSort(min_len=1, max_len=5)
    eval_prompts = task.sample_prompts(512, seed=2)
    t0, c0 = time.perf_counter(), time.process_time()
    policy = pretrained_policy(task, seed=0)
    sft_seconds, sft_cpu = time.perf_counter() - t0, time.process_time() - c0
    model = (f"TinyTransformer(d_model={policy.tok.embedding_dim}, layers={len(policy.blocks)}, "
             f"heads={policy.blocks[0].n_heads}, vocab={policy.vocab_size})")
    print(f"task: {task}; policy: {model}, {policy.n_params} parameters; CPU threads: {torch.get_num_threads()}")
    before = evaluate(policy, task, eval_prompts)
    print(f"SFT ({SFT_STEPS} steps × 128 of {DEMOS} demonstrations): {sft_seconds:.1f} s ({sft_cpu:.1f} s CPU); "
          f"accuracy {before['accuracy']:.3f} (greedy {before['greedy_accuracy']:.3f}, pass@8 {before['pass_at_k']:.3f})")

    config = GRPOConfig()
    if quick:
        config = config.replace(steps=20, eval_every=10)
    print(f"GRPO: {config}")
    hist = train(policy, task, config, eval_prompts=eval_prompts, seed=0)
    after = {"accuracy": hist.eval_accuracy[-1], "greedy_accuracy": hist.eval_greedy_accuracy[-1],
             "pass_at_k": hist.eval_pass_at_k[-1]}
    reached = next((s for s, a in zip(hist.eval_steps, hist.eval_accuracy) if a >= TARGET and s > 0), None)
    at = (lambda xs: round(xs[reached - 1], 2)) if reached else (lambda xs: None)
    print(f"GRPO ({config.steps} steps × {config.prompts_per_step} prompts × {config.group_size} completions, "
          f"{config.epochs} epochs): {hist.seconds[-1]:.1f} s ({hist.cpu_seconds[-1]:.1f} s CPU); accuracy "
          f"{before['accuracy']:.3f} -> {after['accuracy']:.3f} (greedy {before['greedy_accuracy']:.3f} -> "
          f"{after['greedy_accuracy']:.3f}; pass@8 {before['pass_at_k']:.3f} -> {after['pass_at_k']:.3f}); "
          f"KL to the reference {hist.kl_ref[-1]:.3f} per token")
    lift = after["accuracy"] - before["accuracy"]
    if reached:
        print(f"accuracy ≥ {TARGET:.2f} first at step {reached}, after {at(hist.seconds)} s of GRPO "
              f"({at(hist.cpu_seconds)} s CPU); budget: ≥ {TARGET:.2f} and a lift ≥ {LIFT:.2f} within 60 s on 2 cores")
    else:
        print(f"accuracy did not reach {TARGET:.2f} in {config.steps} steps")
    print(f"lift {lift:+.3f} (budget ≥ +{LIFT:.2f}): {'met' if reached and lift >= LIFT else 'NOT met'}")
    return {
        "model": model,
        "parameters": policy.n_params,
        "accuracy_before": round(before["accuracy"], 4),
        "accuracy_after": round(after["accuracy"], 4),
        "greedy_accuracy_before": round(before["greedy_accuracy"], 4),
        "greedy_accuracy_after": round(after["greedy_accuracy"], 4),
        "pass_at_8_before": round(before["pass_at_k"], 4),
        "pass_at_8_after": round(after["pass_at_k"], 4),
        "sft_seconds": round(sft_seconds, 2),
        "sft_cpu_seconds": round(sft_cpu, 2),
        "grpo_seconds": round(hist.seconds[-1], 2),
        "grpo_cpu_seconds": round(hist.cpu_seconds[-1], 2),
        "grpo_steps": config.steps,
        "steps_to_target": reached,
        "seconds_to_target": at(hist.seconds),
        "cpu_seconds_to_target": at(hist.cpu_seconds),
        "kl_to_reference": round(hist.kl_ref[-1], 4),
    }
