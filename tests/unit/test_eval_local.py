"""The local backend on the tiny offline model: batched generation equals one-at-a-time greedy generation, reference
scoring equals a plain forward pass, chat rows go through the chat template."""
from __future__ import annotations

import math
import shutil

import pytest

from llmops.errors import InputError
from llmops.eval.backends.local import LocalBackend
from llmops.eval.data import Sample, load_eval_data

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def sharp_model(tiny_model_dir, tmp_path_factory):
    """The tiny model with its weights scaled up, so different prompts give different greedy outputs."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("sharp-model")
    for f in tiny_model_dir.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy(f, out / f.name)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(4.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def samples(request):
    root = request.config.rootpath
    return load_eval_data(root / "examples/data/eval.jsonl").samples


def reference_greedy(model_dir, prompts, max_new_tokens):
    """The seed's way: one prompt at a time, no padding, straight transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt")
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            new = gen[0, ids["input_ids"].shape[1]:].tolist()
            if tok.eos_token_id in new:
                new = new[:new.index(tok.eos_token_id)]
            out.append(tok.decode(new, skip_special_tokens=True))
    return out


def test_batched_greedy_equals_one_at_a_time(sharp_model, samples):
    backend = LocalBackend(sharp_model, batch_size=5, max_new_tokens=10, show_progress=False)
    gens = backend.generate(samples)
    expected = reference_greedy(sharp_model, [s.prompt for s in samples], 10)
    assert gens.texts == expected
    assert len(set(expected)) > 4, "the fixture model should answer different prompts differently"
    assert all(g.latency_s > 0 and g.output_tokens >= 1 and g.prompt_tokens >= 1 for g in gens.items)
    assert gens.seconds > 0 and gens.info["batch_size"] == 5


def test_sampled_generation_is_reproducible_with_a_seed(sharp_model, samples):
    def run(seed):
        return LocalBackend(sharp_model, batch_size=8, max_new_tokens=8, temperature=1.0, seed=seed,
                            show_progress=False).generate(samples[:8]).texts

    assert run(1) == run(1)


def test_reference_scores_equal_a_plain_forward_pass(tiny_model_dir, samples):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    batched = LocalBackend(tiny_model_dir, batch_size=6, show_progress=False).score(samples)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for s, (nll, count) in zip(samples[:5], batched[:5], strict=True):
        p = tok(s.prompt)["input_ids"]
        r = tok(s.reference, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(torch.tensor([p + r])).logits[0]
        logp = logits.log_softmax(-1)
        expected = -sum(float(logp[len(p) - 1 + k, t]) for k, t in enumerate(r))
        assert count == len(r)
        assert nll == pytest.approx(expected, rel=1e-4)
    # a random model is about as unsure as a uniform guess over its vocabulary
    ppl = math.exp(sum(n for n, _ in batched) / sum(c for _, c in batched))
    assert 50 < ppl < 5 * len(tok)


def test_chat_rows_use_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    msgs = [{"role": "user", "content": "What is two plus two?"}]
    sample = Sample("c1", "four", 1, messages=msgs)
    backend = LocalBackend(tiny_model_dir, max_new_tokens=4, show_progress=False)
    gen = backend.generate([sample]).items[0]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|assistant|>")
    assert gen.prompt_tokens == len(tok(text, add_special_tokens=False)["input_ids"])


def test_missing_or_wrong_model_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="model folder not found"):
        LocalBackend(tmp_path / "nope")
    with pytest.raises(InputError, match="has no config.json"):
        LocalBackend(tmp_path)
