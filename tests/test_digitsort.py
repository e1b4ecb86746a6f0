import pytest
import torch

from pgcourse.digitsort import EOS, PAD, SEP, DigitSort


@pytest.fixture
def task():
    return DigitSort(min_len=1, max_len=5)


def test_answers_are_sorted_digits_then_eos(task, dev):
    prompts = task.encode(["3142", "7", "00", "90919"]).to(dev)
    answers = task.answers(prompts)
    assert answers.device.type == dev.type
    assert task.decode(answers) == ["1234.", "7.", "00.", "01999."]
    assert answers.shape == (4, task.completion_len)
    assert answers[1].tolist() == [7, EOS, PAD, PAD, PAD, PAD]


def test_encode_left_pads_and_decode_round_trips(task):
    prompts = task.encode(["31", "55555"])
    assert prompts[0].tolist() == [PAD, PAD, PAD, 3, 1, SEP]
    assert task.decode(prompts) == ["31=", "55555="]
    assert task.lengths(prompts).tolist() == [2, 5]


def test_reward_is_exact_match_up_to_first_eos(task, dev):
    prompts = task.encode(["321", "321", "321", "321", "321"]).to(dev)
    good = [1, 2, 3, EOS, PAD, PAD]
    rows = [good,
            [1, 2, 3, EOS, 7, 7],          # junk after EOS is ignored
            [1, 2, 3, 4, EOS, PAD],        # one digit too many
            [1, 2, 3, 3, 3, 3],            # never stops (truncated)
            [1, 3, 2, EOS, PAD, PAD]]      # not sorted
    r = task.reward(prompts, torch.tensor(rows, device=dev))
    assert r.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert r.dtype == torch.float32 and r.device.type == dev.type


def test_sample_prompts_covers_lengths_and_is_seeded(task):
    a = task.sample_prompts(2000, seed=3)
    assert torch.equal(a, task.sample_prompts(2000, seed=3))
    assert not torch.equal(a, task.sample_prompts(2000, seed=4))
    lengths = task.lengths(a)
    assert set(lengths.tolist()) == {1, 2, 3, 4, 5}
    # each length equally likely: within 4 standard errors of 1/5
    freq = torch.bincount(lengths, minlength=6)[1:].double() / 2000
    se = (0.2 * 0.8 / 2000) ** 0.5
    assert ((freq - 0.2).abs() < 4 * se).all()
    # padding is on the left only
    body = a[:, :-1]
    first_digit = (body != PAD).long().argmax(1)
    assert torch.equal(first_digit, task.max_len - lengths)
    assert (a[:, -1] == SEP).all()
    assert torch.equal(task.reward(a, task.answers(a)), torch.ones(2000))


def test_bad_inputs(task):
    with pytest.raises(ValueError, match="max_len"):
        DigitSort(min_len=4, max_len=2)
    with pytest.raises(TypeError, match="min_len"):
        DigitSort(min_len=1.5)
    with pytest.raises(ValueError, match="strings"):
        task.encode(["12a"])
    with pytest.raises(ValueError, match="strings"):
        task.encode(["123456"])
    with pytest.raises(ValueError, match="prompts"):
        task.answers(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="prompts"):
        task.answers(torch.zeros(3, task.prompt_len))
    with pytest.raises(ValueError, match="prompts"):
        task.answers(torch.full((2, task.prompt_len), 3))  # no '=' at the end
    prompts = task.encode(["12"])
    with pytest.raises(ValueError, match="completions"):
        task.reward(prompts, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="n"):
        task.sample_prompts(0)


def test_stops_is_a_format_reward(task):
    rows = torch.tensor([[1, 2, EOS, PAD, PAD, PAD], [1, 2, 3, 4, 5, 6], [EOS, PAD, PAD, PAD, PAD, PAD]])
    assert task.stops(rows).tolist() == [1.0, 0.0, 1.0]
