import math

import pytest
import torch

from pgcourse.digitsort import EOS, PAD, DigitSort
from pgcourse.tinylm import (completion_logp, completion_logp_entropy, completion_mask, sample, sequence_logp,
                             supervised_finetune)
from pgcourse.tokenizer import CharTokenizer
from pgcourse.transformer import TinyTransformer

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture
def task():
    return DigitSort(1, 5)


def make_model(task, dev="cpu", seed=0):
    torch.manual_seed(seed)
    model = TinyTransformer(task.vocab_size, max_len=task.prompt_len + task.completion_len).to(dev)
    with torch.no_grad():   # a random model far from uniform, so differences show
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_round_trip_and_specials():
    tok = CharTokenizer("0123456789=")
    assert (tok.pad, tok.bos, tok.eos, tok.vocab_size) == (0, 1, 2, 14)
    ids = tok.encode("^31=13.")
    assert ids[0] == tok.bos and ids[-1] == tok.eos
    assert tok.decode(ids) == "31=13." and tok.decode(ids, strip=False) == "^31=13."
    assert tok.decode(tok.encode("12.34__")) == "12."          # nothing after the first EOS
    assert tok.decode_batch(torch.tensor([[4, 5, 2, 0], [3, 2, 0, 0]])) == ["12.", "0."]


def test_tokenizer_bad_inputs():
    with pytest.raises(ValueError, match="chars"):
        CharTokenizer("aa")
    with pytest.raises(ValueError, match="chars"):
        CharTokenizer("ab.")
    with pytest.raises(TypeError, match="chars"):
        CharTokenizer("")
    tok = CharTokenizer("ab")
    with pytest.raises(ValueError, match="text"):
        tok.encode("abc")
    with pytest.raises(TypeError, match="text"):
        tok.encode(3)
    with pytest.raises(ValueError, match="ids"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


# ---------------------------------------------------------------- the transformer

def test_causal_mask_a_future_token_never_changes_a_past_logit(task):
    model = make_model(task)
    x = torch.randint(0, task.vocab_size, (8, 12), generator=torch.Generator().manual_seed(0))
    base = model(x).detach()
    for j in range(12):
        y = x.clone()
        y[:, j] = (y[:, j] + 1 + torch.arange(8)) % task.vocab_size   # change token j in every row
        out = model(y).detach()
        assert torch.equal(out[:, :j], base[:, :j]), f"a change at position {j} reached an earlier logit"
        assert not torch.allclose(out[:, j], base[:, j])                # ... and it does reach its own


def test_causal_mask_by_gradient(task):
    """∂ logits[t] / ∂ embedding[s] = 0 for every s > t (exactly), and ≠ 0 for s ≤ t."""
    model = make_model(task)
    x = torch.randint(0, task.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    emb = (model.tok(x) + model.pos(torch.arange(9))).detach().requires_grad_(True)
    h = emb
    for block in model.blocks:
        h = block(h)
    logits = model.head(model.ln(h))
    for t in range(9):
        (g,) = torch.autograd.grad(logits[0, t].sum(), emb, retain_graph=True)
        norms = g[0].norm(dim=-1)
        assert bool((norms[t + 1:] == 0).all()) and bool((norms[: t + 1] > 0).all())


def test_kv_cache_matches_the_full_forward(task):
    model = make_model(task)
    x = torch.randint(0, task.vocab_size, (5, 10), generator=torch.Generator().manual_seed(2))
    full = model(x)
    cache = model.new_cache()
    parts = [model(x[:, :4], cache)] + [model(x[:, t:t + 1], cache) for t in range(4, 10)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_transformer_shapes_and_bad_inputs(task):
    model = TinyTransformer(task.vocab_size, d_model=32, n_layers=1, n_heads=2, max_len=8)
    assert model(torch.zeros(3, 8, dtype=torch.long)).shape == (3, 8, task.vocab_size)
    assert model.n_params == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens"):
        model(torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="n_heads"):
        TinyTransformer(10, d_model=30, n_heads=4)
    with pytest.raises(TypeError, match="d_model"):
        TinyTransformer(10, d_model=64.0)
    with pytest.raises(ValueError, match="vocab_size"):
        TinyTransformer(0)


# ---------------------------------------------------------------- sampling and log-probs

def test_completion_mask_stops_after_first_eos():
    tokens = torch.tensor([[5, EOS, PAD, PAD], [EOS, 3, EOS, 4], [4, 5, 6, 7]])
    m = completion_mask(tokens, EOS)
    assert m.tolist() == [[True, True, False, False], [True, False, False, False], [True, True, True, True]]


def test_sample_shapes_masks_and_logp(task, dev):
    model = make_model(task, dev)
    prompts = task.sample_prompts(64, seed=0, device=dev).repeat_interleave(4, 0)
    out = sample(model, prompts, task.completion_len, EOS, PAD, seed=1)
    assert out.tokens.shape == out.mask.shape == out.logp.shape == (256, task.completion_len)
    assert out.tokens.device.type == dev.type
    assert torch.equal(out.mask, completion_mask(out.tokens, EOS))
    assert (out.tokens[~out.mask] == PAD).all()          # after the first EOS everything is PAD...
    assert (out.logp[~out.mask] == 0).all()              # ... with logp 0
    assert (out.logp[out.mask] <= 0).all()
    assert torch.equal(out.lengths, out.mask.sum(1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_temperature_consistency_rho_is_exactly_one(task, dev, temperature):
    """The sampler's old log-probs are the training code's recomputation at the same T, bit for bit."""
    model = make_model(task, dev)
    prompts = task.sample_prompts(128, seed=0, device=dev)
    out = sample(model, prompts, task.completion_len, EOS, PAD, seed=3, temperature=temperature)
    assert out.temperature == temperature
    again = completion_logp(model, prompts, out.tokens, temperature=temperature)
    rho = torch.exp(again - out.logp)[out.mask]
    assert torch.equal(again[out.mask], out.logp[out.mask]) and bool((rho == 1).all())
    if temperature != 1.0:  # at the wrong temperature they differ: ρ ≠ 1 with no update at all
        at_one = completion_logp(model, prompts, out.tokens)
        assert (at_one - out.logp)[out.mask].abs().max() > 1e-2


def test_tokens_are_drawn_from_the_tempered_softmax(task):
    model = make_model(task)
    prompt = task.encode(["42"])
    n, T = 20000, 0.6
    out = sample(model, prompt.expand(n, -1), 1, EOS, PAD, seed=0, temperature=T)
    probs = torch.softmax(model(prompt)[0, -1].detach().double() / T, -1)
    freq = torch.bincount(out.tokens[:, 0], minlength=task.vocab_size).double() / n
    se = (probs * (1 - probs) / n).sqrt()
    assert ((freq - probs).abs() <= 4 * se + 1e-9).all()   # 4 SE: |z| < 4 on every one of 14 tokens


def test_sample_is_seeded_and_low_temperature_is_greedy(task, dev):
    model = make_model(task, dev)
    prompts = task.sample_prompts(128, seed=0, device=dev)
    a = sample(model, prompts, task.completion_len, EOS, PAD, seed=5).tokens
    b = sample(model, prompts, task.completion_len, EOS, PAD, seed=5).tokens
    c = sample(model, prompts, task.completion_len, EOS, PAD, seed=6).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = sample(model, prompts, task.completion_len, EOS, PAD, greedy=True).tokens
    cold = sample(model, prompts, task.completion_len, EOS, PAD, seed=0, temperature=1e-4).tokens
    assert torch.equal(greedy, cold)


def test_sampling_without_a_cache_gives_the_same_tokens(task):
    model = make_model(task)

    class NoCache(torch.nn.Module):   # the same model, seen through forward(tokens) only
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, tokens):
            return self.m(tokens)

    prompts = task.sample_prompts(64, seed=0)
    a = sample(model, prompts, task.completion_len, EOS, PAD, seed=1)
    b = sample(NoCache(model), prompts, task.completion_len, EOS, PAD, seed=1)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logp, b.logp)


def test_entropy_and_sequence_logp(task):
    model = make_model(task)
    prompts = task.encode(["31", "5"])
    comps = task.answers(prompts)
    logp, ent = completion_logp_entropy(model, prompts, comps, temperature=2.0)
    assert torch.allclose(logp, completion_logp(model, prompts, comps, temperature=2.0))
    assert bool((ent > 0).all()) and bool((ent <= math.log(task.vocab_size) + 1e-5).all())
    mask = completion_mask(comps, EOS)
    total = sequence_logp(model, prompts, comps, EOS)
    assert torch.allclose(total, (completion_logp(model, prompts, comps) * mask).sum(1))
    total.sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_supervised_finetune_learns(task):
    model = make_model(task)
    prompts = task.sample_prompts(500, seed=1)
    losses = supervised_finetune(model, prompts, task.answers(prompts), EOS, steps=40, batch_size=64, seed=0)
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


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
    with pytest.raises(ValueError, match="temperature"):
        completion_logp(model, prompts, task.answers(prompts), temperature=-1.0)
    with pytest.raises(ValueError, match="completions"):
        completion_logp(model, prompts, task.answers(prompts)[:2])
    with pytest.raises(TypeError, match="completions"):
        completion_logp(model, prompts, task.answers(prompts).float())
    with pytest.raises(ValueError, match="steps"):
        supervised_finetune(model, prompts, task.answers(prompts), EOS, steps=0)
