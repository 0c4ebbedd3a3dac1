"""What the model is trained on: loss masks per format, the length policy, packing that keeps samples apart."""
from __future__ import annotations

import json

import pytest

from llmops.errors import InputError, UsageError
from llmops.train import data, packing

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is two plus two?"},
        {"role": "assistant", "content": "four"}, {"role": "user", "content": "And one plus one?"},
        {"role": "assistant", "content": "two"}]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _trained(tok, sample) -> str:
    return tok.decode([t for t in sample.labels if t != data.IGNORE])


def _load(tok, path, fmt="auto", max_len=512, truncation=False):
    return data.load_samples(str(path), tok, fmt, max_len, truncation)


def test_prompt_completion_trains_only_on_the_completion(tok, tmp_path):
    path = _write(tmp_path / "pc.jsonl", [{"prompt": "What is one plus three?", "completion": " four"}])
    (sample,), info = _load(tok, path)
    prompt_len = len(tok("What is one plus three?")["input_ids"])
    assert sample.labels[:prompt_len] == [data.IGNORE] * prompt_len
    assert _trained(tok, sample) == " four</s>"
    assert info.format == "prompt-completion" and info.trainable_tokens == len(sample) - prompt_len


def test_chat_trains_only_on_assistant_turns(tok, tmp_path):
    (sample,), info = _load(tok, _write(tmp_path / "c.jsonl", [{"messages": CHAT}]))
    assert info.format == "chat"
    assert _trained(tok, sample).replace("\n", "") == "four</s>two</s>"
    assert "<|user|>" in tok.decode(sample.input_ids)


def test_chat_with_a_generation_marked_template_uses_the_tokenizers_mask(tok):
    import copy

    marked = copy.deepcopy(tok)
    marked.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{% if m['role'] == 'assistant' %}"
                            "{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}"
                            "{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}")
    ids, labels = data.encode_chat(marked, CHAT)
    assert tok.decode([t for t in labels if t != data.IGNORE]) == "four</s>two</s>"


def test_a_template_that_is_not_prefix_stable_is_refused(tok):
    import copy

    odd = copy.deepcopy(tok)  # renders the number of messages first: every prefix renders differently
    odd.chat_template = "{{ messages|length }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    with pytest.raises(UsageError, match="prefix"):
        data.encode_chat(odd, CHAT, "f.jsonl:3")


def test_text_trains_on_every_token_but_the_first(tok, tmp_path):
    (sample,), _ = _load(tok, _write(tmp_path / "t.jsonl", [{"text": "the quick brown fox"}]))
    assert sample.labels[0] == data.IGNORE and sample.labels[1:] == sample.input_ids[1:]
    assert sample.input_ids[-1] == tok.eos_token_id


def test_too_long_is_an_error_naming_file_and_line_unless_truncation_is_allowed(tok, tmp_path):
    rows = [{"text": "short"}, {"text": "word " * 200}, {"text": "fine"}]
    path = _write(tmp_path / "long.jsonl", rows)
    with pytest.raises(InputError) as err:
        _load(tok, path, max_len=32)
    assert f"{path}:2 has" in err.value.message and "max-seq-length 32" in err.value.message
    assert err.value.line == 2 and "truncation" in err.value.hint
    samples, info = _load(tok, path, max_len=32, truncation=True)
    assert info.truncated == 1 and max(len(s) for s in samples) == 32


def test_rows_that_do_not_fit_the_format_are_named(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "c"}])
    with pytest.raises(InputError) as err:
        data.read_rows(str(path), "auto")
    assert f"{path}:2: $.completion: missing required field 'completion'" in err.value.message
    assert err.value.line == 2


def test_pack_fills_rows_without_splitting_or_losing_samples():
    lengths = [90, 10, 60, 40, 33, 70, 30, 5, 100, 1]
    bins = packing.pack_indices(lengths, 100)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 100 for b in bins)
    assert len(bins) == 5  # 439 tokens: the best possible with rows of 100
    with pytest.raises(ValueError):
        packing.pack_indices([101], 100)


def test_packed_samples_do_not_attend_to_each_other(tiny_model_dir, tok):
    """Packing must not change what the model computes for a sample (position ids restart per sample)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    a = data.Sample(tok("one two three four")["input_ids"], [0] * 4)
    b = data.Sample(tok("zero plus five is")["input_ids"], [0] * 4)
    (row,) = packing.pack([a, b], 64)
    batch = packing.collate_packed([row], tok.pad_token_id)
    a_at, b_at = (0, len(a)) if row.input_ids[:len(a)] == a.input_ids else (len(b), 0)  # pack() orders by length
    with torch.no_grad():  # use_cache=False, as in training: a KV cache turns the per-sample masking off
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = [model(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits[0] for s in (a, b)]
    torch.testing.assert_close(packed[a_at:a_at + len(a)], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[b_at:b_at + len(b)], alone[1], atol=1e-5, rtol=1e-4)


def test_padded_batches_mask_padding_and_count_real_tokens():
    rows = packing.unpacked([data.Sample([5, 6, 7], [-100, 6, 7]), data.Sample([8], [-100])])
    batch = packing.collate_padded(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, -100, -100]]
    assert batch["num_tokens"] == 4


def test_epoch_order_depends_only_on_seed_and_epoch():
    s1, s2 = packing.EpochSampler(20, seed=3), packing.EpochSampler(20, seed=3)
    s2.set_epoch(1)
    assert list(s1) != list(s2) and sorted(s2) == list(range(20))
    s1.set_epoch(1)
    assert list(s1) == list(s2)


@pytest.mark.parametrize("n, batch, world, accumulation", [(57, 2, 2, 1), (57, 4, 1, 1), (10, 1, 4, 2),
                                                           (3, 2, 4, 1), (100, 3, 3, 3)])
def test_global_batches_give_every_row_once_and_the_same_steps_at_any_split(n, batch, world, accumulation):
    from llmops.train.distributed import GlobalBatches

    def per_step(b, w, a, epoch):
        ranks = [list(GlobalBatches(packing.EpochSampler(n, 7), b, w, r, a).steps(epoch)) for r in range(w)]
        assert len({len(steps) for steps in ranks}) == 1
        for step in zip(*ranks, strict=True):  # every process runs as many micro-batches in a step
            assert len({len(micro) for micro in step}) == 1
        return [sorted(i for rank_step in step for micro in rank_step for i in micro) for step in zip(*ranks, strict=True)]

    steps = per_step(batch, world, accumulation, epoch=3)
    assert sorted(i for s in steps for i in s) == list(range(n))  # every row once, none twice
    single = per_step(batch * world * accumulation, 1, 1, epoch=3)  # one process with the whole global batch
    assert steps == single
    resumed = list(GlobalBatches(packing.EpochSampler(n, 7), batch, world, 0, accumulation).steps(3, start=1))
    assert resumed == list(GlobalBatches(packing.EpochSampler(n, 7), batch, world, 0, accumulation).steps(3))[1:]
