"""Each metric against hand-checked values (and BLEU/chrF against sacrebleu itself), the registry and signatures."""
from __future__ import annotations

import math
import random
import sys

import numpy as np
import pytest
import sacrebleu

from llmops.errors import InfraError, UsageError
from llmops.eval.metrics import EvalRun, get_metric, kebab, resolve_names
from llmops.eval.metrics_text import bleu_from_sums, normalize


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")


def run_of(preds, refs, **kw) -> EvalRun:
    return EvalRun(ids=[str(i) for i in range(len(preds))], references=list(refs), predictions=list(preds), **kw)


def value(name, run, **options):
    return get_metric(name, **options).compute(run).value


def test_exact_match_strips_only_whitespace_by_default():
    run = run_of(["eight", " eight\n", "Eight", "eight."], ["eight"] * 4)
    assert value("exact_match", run) == 0.5


def test_accuracy_normalises_case_punctuation_and_articles():
    run = run_of(["Eight.", "the Blue", "eight apples", "ten"], ["eight", "blue", "eight", "eight"])
    assert value("accuracy", run) == 0.5
    assert value("accuracy", run, match="prefix") == 0.75  # "eight apples" starts with the word "eight"
    assert value("accuracy", run_of(["eighty"], ["eight"]), match="prefix") == 0.0  # not a word boundary
    assert value("accuracy", run_of(["I think it is eight."], ["eight"]), match="contains") == 1.0
    assert normalize("  The  Cat, sat! ", ("lower", "punct", "articles", "whitespace")) == "cat sat"


def test_bad_normalisation_and_options_are_usage_errors():
    with pytest.raises(UsageError, match="unknown normalisation"):
        get_metric("accuracy", normalize="lower,stemming")
    with pytest.raises(UsageError, match="unknown option"):
        get_metric("bleu", smoothing="floor")


def test_bleu_identical_is_100_and_matches_sacrebleu_hand_case():
    assert value("bleu", run_of(["the cat sat on the mat"], ["the cat sat on the mat"])) == pytest.approx(100.0)
    # hyp 3 tokens vs ref 4: precisions 3/3, 2/2, 1/1, 0/0 -> no 4-grams at all, so BLEU is 0 (sacrebleu says so too)
    assert value("bleu", run_of(["the cat sat"], ["the cat sat on"])) == 0.0
    # hyp 4 of ref 6 tokens: p = 4/4, 3/3, 2/2, 1/1, BP = exp(1 - 6/4)
    got = value("bleu", run_of(["the cat sat on"], ["the cat sat on the mat"]))
    assert got == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-9)


def _random_corpus(rng, n):
    words = "a b c d e f g h i j the cat dog sat ran on mat".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(n)]
    hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) if rng.random() < 0.6 else r
            for r in refs]
    return hyps, refs


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_bleu_and_chrf_equal_sacrebleu_on_random_subsets(seed):
    rng = random.Random(seed)
    hyps, refs = _random_corpus(rng, 60)
    run = run_of(hyps, refs)
    bleu, chrf = get_metric("bleu"), get_metric("chrf")
    b_stats, c_stats = bleu.compute(run).stats, chrf.compute(run).stats
    for size in (1, 3, 60):
        idx = rng.sample(range(60), size)
        sub_h, sub_r = [hyps[i] for i in idx], [refs[i] for i in idx]
        assert bleu.aggregate(b_stats[idx]) == pytest.approx(sacrebleu.corpus_bleu(sub_h, [sub_r]).score, abs=1e-9)
        assert chrf.aggregate(c_stats[idx]) == pytest.approx(sacrebleu.corpus_chrf(sub_h, [sub_r]).score, abs=1e-9)


def test_bleu_exp_smoothing_on_zero_match_orders():
    # correct 2/0/0/0 of totals 3/2/1/1 would be 0 without smoothing; sacrebleu's 'exp' halves per zero order
    sums = np.array([[3, 3, 2, 0, 0, 0, 3, 2, 1, 1]], dtype=float)
    expected = sacrebleu.BLEU.compute_bleu([2, 0, 0, 0], [3, 2, 1, 1], 3, 3, smooth_method="exp").score
    assert bleu_from_sums(sums)[0] == pytest.approx(expected)
    assert expected > 0


def test_rouge_hand_checked():
    run = run_of(["the cat sat"], ["the cat sat on the mat"])
    # unigrams: P 3/3, R 3/6 -> F 2/3; bigrams: P 2/2, R 2/5 -> F 4/7; LCS 3 -> like unigrams
    assert value("rouge1", run) == pytest.approx(2 / 3)
    assert value("rouge2", run) == pytest.approx(4 / 7)
    assert value("rouge_l", run) == pytest.approx(2 / 3)
    assert resolve_names(["rouge"]) == ["rouge1", "rouge2", "rouge_l"]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("options", [{}, {"use_stemmer": True}, {"tokenizer": "whitespace"}])
def test_rouge_equals_rouge_score_on_random_text(seed, options):
    from rouge_score import rouge_scorer

    rng = random.Random(seed)
    words = "The cats running ran runs dog's mat, on a b c; d-e F g 42 42nd é running! x y".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 15))) for _ in range(40)]
    hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 15))) for _ in range(40)]

    class Whitespace:
        def tokenize(self, text):
            return text.lower().split()

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=options.get("use_stemmer", False),
                                      tokenizer=Whitespace() if options.get("tokenizer") == "whitespace" else None)
    expected = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    run = run_of(hyps, refs)
    for ours, theirs in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rouge_l", "rougeL")):
        stats = get_metric(ours, **options).compute(run).stats[:, 0]
        assert stats == pytest.approx([e[theirs].fmeasure for e in expected], abs=1e-12)


def test_bit_parallel_lcs_equals_dynamic_programming():
    from llmops.eval.metrics_text import lcs_length

    def dp(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j],
                                                                                        table[i][j - 1])
        return table[-1][-1]

    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == dp(a, b)


def test_rouge_whitespace_tokenizer_keeps_non_latin_text():
    run = run_of(["天空 是 蓝色"], ["天空 是 蓝色"])
    assert value("rouge1", run) == 0.0  # rouge-score's default tokenizer drops non-ASCII letters
    assert value("rouge1", run, tokenizer="whitespace") == 1.0


def test_perplexity_and_loss_from_reference_scores():
    run = run_of(["x", "y"], ["a", "b"], ref_scores=[(2.0, 2), (6.0, 2)])
    assert value("loss", run) == pytest.approx(2.0)  # 8 nats over 4 tokens
    assert value("perplexity", run) == pytest.approx(math.exp(2.0))
    with pytest.raises(Exception, match="needs the local model backend"):
        get_metric("perplexity").compute(run_of(["x"], ["a"], backend="endpoint"))


def test_latency_percentiles_throughput_length_and_cost():
    lat = [0.1 * (i + 1) for i in range(10)]
    run = run_of(["x"] * 10, ["y"] * 10, latencies=lat, output_tokens=[5] * 10, prompt_tokens=[20] * 10,
                 generation_seconds=2.0, prices={"input_per_1k_tokens": 1.0, "output_per_1k_tokens": 2.0})
    assert value("latency_p50", run) == pytest.approx(0.55)
    assert value("latency_p95", run) == pytest.approx(0.955)
    assert value("tokens_per_s", run) == pytest.approx(25.0)  # 50 tokens in 2 s
    assert value("output_length", run) == 5.0
    assert value("cost", run) == pytest.approx((20 * 1.0 + 5 * 2.0) / 1000)
    with pytest.raises(Exception, match="needs prices"):
        get_metric("cost").compute(run_of(["x"], ["y"], output_tokens=[1], prompt_tokens=[1]))


def test_registry_rejects_unknown_names_with_the_known_ones():
    with pytest.raises(UsageError) as err:
        resolve_names(["accuracy", "blue"])
    assert "'blue'" in err.value.message and "bleu" in err.value.hint


def test_spellings_and_output_names():
    assert resolve_names(["rougeL", "Exact-Match", "ppl", "latency"]) == [
        "rouge_l", "exact_match", "perplexity", "latency_p50", "latency_p95", "latency_p99"]
    assert [kebab(n) for n in ("rouge_l", "exact_match", "tokens_per_s", "hf:bertscore")] == [
        "rouge-l", "exact-match", "tokens-per-s", "hf-bertscore"]


def test_signatures_name_settings_and_library_versions():
    assert get_metric("bleu").signature() == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert "tok:zh" in get_metric("bleu", tokenize="zh").signature()
    assert get_metric("accuracy", match="prefix").signature().startswith("norm:lower+punct+articles+whitespace|"
                                                                         "match:prefix|version:")
    assert "compat:rouge-score-" in get_metric("rouge1").signature()


def test_hf_metric_without_the_evaluate_package_is_a_clear_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "evaluate", None)  # import evaluate -> ImportError
    with pytest.raises(UsageError, match="needs the Hugging Face 'evaluate' package"):
        get_metric("hf:bertscore").compute(run_of(["a"], ["a"]))


def test_hf_metric_offline_is_a_clear_infra_error(monkeypatch):
    class FakeEvaluate:
        __version__ = "0.4.0"

        @staticmethod
        def load(name):
            raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setitem(sys.modules, "evaluate", FakeEvaluate)
    with pytest.raises(InfraError, match="offline mode is on"):
        get_metric("hf:bertscore").compute(run_of(["a"], ["a"]))


def test_hf_metric_value_is_read_from_the_result(monkeypatch):
    class Loaded:
        def compute(self, predictions, references):
            return {"f1": [1.0, 0.5], "hashcode": "x"}

    class FakeEvaluate:
        __version__ = "0.4.0"
        load = staticmethod(lambda name: Loaded())

    monkeypatch.setitem(sys.modules, "evaluate", FakeEvaluate)
    metric = get_metric("hf:bertscore")
    assert metric.compute(run_of(["a", "b"], ["a", "c"])).value == 0.75
    assert metric.signature() == "hf:bertscore|key:auto|version:evaluate-0.4.0"
