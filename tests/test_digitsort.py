import pytest
import torch

from pgcourse.digitsort import BOS, EOS, PAD, SEP, DigitSort


@pytest.fixture
def task():
    return DigitSort(min_len=1, max_len=5, extra=3)


def ids(text: str) -> list[int]:
    return DigitSort.tokenizer.encode(text)


def test_answers_are_sorted_digits_then_eos(task, dev):
    prompts = task.encode(["3142", "7", "00", "90919"]).to(dev)
    answers = task.answers(prompts)
    assert answers.device.type == dev.type
    assert task.decode(answers) == ["1234.", "7.", "00.", "01999."]
    assert answers.shape == (4, task.completion_len) == (4, 9)
    assert answers[1].tolist() == ids("7.") + [PAD] * 7


def test_encode_left_pads_and_decode_round_trips(task):
    prompts = task.encode(["31", "55555"])
    assert prompts.shape == (2, task.prompt_len) == (2, 7)
    assert prompts[0].tolist() == [PAD, PAD, PAD, BOS] + ids("31") + [SEP]
    assert prompts[1].tolist() == [BOS] + ids("55555=")
    assert task.decode(prompts) == ["31=", "55555="]
    assert task.lengths(prompts).tolist() == [2, 5]


def test_reward_is_exact_match_up_to_first_eos(task, dev):
    prompts = task.encode(["321"] * 6).to(dev)
    rows = ["123.", "123.77", "1234.", "123333333", "132.", "."]
    comps = torch.tensor([ids(r) + [PAD] * (task.completion_len - len(r)) for r in rows], device=dev)
    r = task.reward(prompts, comps)
    #      right, junk after EOS ignored, a digit too many, never stops, not sorted, empty
    assert r.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert r.dtype == torch.float32 and r.device.type == dev.type
    assert task.answer_lengths(comps).tolist() == [3, 3, 4, 9, 3, 0]


def test_wrong_answers_can_be_longer_than_any_right_one(task):
    """The completion has `extra` slots more than the longest answer: a wrong answer can grow."""
    prompts = task.encode(["55555"])
    long_wrong = torch.tensor([ids("55555555.")])
    assert long_wrong.shape[1] == task.completion_len
    assert task.reward(prompts, long_wrong).item() == 0.0 and task.well_formed(long_wrong).item() == 1.0


def test_well_formed_is_a_format_reward_the_empty_answer_wins(task):
    rows = ["12.", "12345678", ".", "1=2.", "9.9"]
    comps = torch.tensor([ids(r) + [PAD] * (task.completion_len - len(r)) for r in rows])
    assert task.well_formed(comps).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_sample_prompts_covers_lengths_and_is_seeded(task):
    a = task.sample_prompts(2000, seed=3)
    assert torch.equal(a, task.sample_prompts(2000, seed=3))
    assert not torch.equal(a, task.sample_prompts(2000, seed=4))
    lengths = task.lengths(a)
    assert set(lengths.tolist()) == {1, 2, 3, 4, 5}
    freq = torch.bincount(lengths, minlength=6)[1:].double() / 2000   # each length 1/5: within 4 SE
    se = (0.2 * 0.8 / 2000) ** 0.5
    assert ((freq - 0.2).abs() < 4 * se).all()
    bos_at = (a == BOS).long().argmax(1)                             # PAD on the left only, then BOS
    assert torch.equal(bos_at, task.max_len - lengths)
    assert (a[:, -1] == SEP).all()
    assert torch.equal(task.reward(a, task.answers(a)), torch.ones(2000))
    assert torch.equal(task.well_formed(task.answers(a)), torch.ones(2000))


def test_bad_inputs(task):
    with pytest.raises(ValueError, match="max_len"):
        DigitSort(min_len=4, max_len=2)
    with pytest.raises(TypeError, match="min_len"):
        DigitSort(min_len=1.5)
    with pytest.raises(ValueError, match="extra"):
        DigitSort(extra=-1)
    with pytest.raises(ValueError, match="strings"):
        task.encode(["12a"])
    with pytest.raises(ValueError, match="strings"):
        task.encode(["123456"])
    with pytest.raises(TypeError, match="strings"):
        task.encode([12])
    with pytest.raises(ValueError, match="prompts"):
        task.answers(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="prompts"):
        task.answers(torch.zeros(3, task.prompt_len))
    with pytest.raises(ValueError, match="prompts"):
        task.answers(torch.full((2, task.prompt_len), 5))  # no BOS, no '=' at the end
    prompts = task.encode(["12"])
    with pytest.raises(ValueError, match="completions"):
        task.reward(prompts, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="completions"):
        task.well_formed(torch.zeros(1, task.completion_len))
    with pytest.raises(ValueError, match="n"):
        task.sample_prompts(0)
