import pytest
import torch

from pgcourse.digitsort import EOS, PAD, DigitSort
from pgcourse.tinylm import (PromptValue, TinyLM, completion_logp, completion_mask, sample, sequence_logp,
                             supervised_finetune)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture
def task():
    return DigitSort(1, 5)


def make_model(task, dev="cpu", seed=0):
    torch.manual_seed(seed)
    return TinyLM(task.vocab_size).to(dev)


def test_completion_mask_stops_after_first_eos():
    tokens = torch.tensor([[1, EOS, PAD, PAD], [EOS, 3, EOS, 1], [1, 2, 3, 4]])
    m = completion_mask(tokens, EOS)
    assert m.tolist() == [[True, True, False, False], [True, False, False, False], [True, True, True, True]]


def test_sample_shapes_masks_and_logp(task, dev):
    model = make_model(task, dev)
    prompts = task.sample_prompts(64, seed=0, device=dev).repeat_interleave(4, 0)
    out = sample(model, prompts, task.completion_len, EOS, PAD, seed=1)
    assert out.tokens.shape == out.mask.shape == out.logp.shape == (256, task.completion_len)
    assert out.tokens.device.type == dev.type
    assert torch.equal(out.mask, completion_mask(out.tokens, EOS))
    # after the first EOS everything is PAD, and logp is 0 there
    assert (out.tokens[~out.mask] == PAD).all()
    assert (out.logp[~out.mask] == 0).all()
    assert (out.logp[out.mask] <= 0).all()
    # the sampler's log-probs are the model's (teacher forcing gives the same numbers)
    tf = completion_logp(model, prompts, out.tokens)
    assert torch.allclose(tf[out.mask], out.logp[out.mask], atol=1e-5)
    assert torch.equal(out.lengths, out.mask.sum(1))


def test_sample_is_seeded(task, dev):
    model = make_model(task, dev)
    prompts = task.sample_prompts(128, seed=0, device=dev)
    a = sample(model, prompts, task.completion_len, EOS, PAD, seed=5).tokens
    b = sample(model, prompts, task.completion_len, EOS, PAD, seed=5).tokens
    c = sample(model, prompts, task.completion_len, EOS, PAD, seed=6).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1 = sample(model, prompts, task.completion_len, EOS, PAD, greedy=True).tokens
    g2 = sample(model, prompts, task.completion_len, EOS, PAD, greedy=True).tokens
    assert torch.equal(g1, g2)


def test_first_token_frequencies_match_the_policy(task):
    model = make_model(task)
    prompt = task.encode(["42"])
    n = 20000
    out = sample(model, prompt.expand(n, -1), 1, EOS, PAD, seed=0)
    probs = torch.softmax(model(prompt)[0][0, -1], -1).detach().double()
    freq = torch.bincount(out.tokens[:, 0], minlength=task.vocab_size).double() / n
    se = (probs * (1 - probs) / n).sqrt()
    assert ((freq - probs).abs() <= 4 * se + 1e-9).all()


def test_low_temperature_approaches_greedy(task):
    model = make_model(task)
    prompts = task.sample_prompts(64, seed=0)
    greedy = sample(model, prompts, task.completion_len, EOS, PAD, greedy=True).tokens
    cold = sample(model, prompts, task.completion_len, EOS, PAD, seed=0, temperature=1e-4).tokens
    assert torch.equal(greedy, cold)


def test_sequence_logp_sums_masked_tokens_and_has_gradients(task):
    model = make_model(task)
    prompts = task.encode(["31", "5"])
    comps = task.answers(prompts)
    per_token = completion_logp(model, prompts, comps)
    total = sequence_logp(model, prompts, comps, EOS)
    mask = completion_mask(comps, EOS)
    assert torch.allclose(total, (per_token * mask).sum(1))
    total.sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_supervised_finetune_learns(task):
    model = make_model(task)
    prompts = task.sample_prompts(500, seed=1)
    losses = supervised_finetune(model, prompts, task.answers(prompts), EOS, steps=60, batch_size=64, seed=0)
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10


def test_prompt_value_shape(task):
    v = PromptValue(task.vocab_size)
    assert v(task.sample_prompts(7, seed=0)).shape == (7,)


def test_bad_inputs(task):
    model = make_model(task)
    prompts = task.sample_prompts(4, seed=0)
    with pytest.raises(TypeError, match="prompts"):
        sample(model, prompts.float(), 3, EOS, PAD)
    with pytest.raises(ValueError, match="prompts"):
        sample(model, prompts[0], 3, EOS, PAD)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(model, prompts, 0, EOS, PAD)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, prompts, 3, EOS, PAD, temperature=0.0)
    with pytest.raises(ValueError, match="completions"):
        completion_logp(model, prompts, task.answers(prompts)[:2])
    with pytest.raises(ValueError, match="steps"):
        supervised_finetune(model, prompts, task.answers(prompts), EOS, steps=0)
    with pytest.raises(TypeError, match="hidden"):
        TinyLM(13, hidden=3.5)
