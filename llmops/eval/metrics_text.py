"""Text-quality metrics against references: exact match, accuracy, BLEU, chrF (sacrebleu), ROUGE-1/2/L (computed
the way rouge-score does, faster).

All work offline. BLEU and chrF keep sacrebleu's per-sentence sufficient statistics, so the corpus score of any
resample is a sum of rows followed by a vectorised formula (identical to sacrebleu's ``compute_bleu`` /
``_compute_f_score``; the unit tests check that), which makes paired bootstrap over thousands of resamples cheap.
"""
from __future__ import annotations

import re
import string
from typing import Any

import numpy as np

from llmops.errors import UsageError
from llmops.eval.metric_base import EvalRun, Metric, MetricValue, register

NORMALIZERS = ("strip", "lower", "punct", "articles", "whitespace")
_PUNCT = re.compile("[" + re.escape(string.punctuation) + "\u3000-\u303f\uff00-\uffef]")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.I)


def normalize(text: str, steps: tuple[str, ...]) -> str:
    """Apply the named normalisation steps in a fixed order (SQuAD-style when all are on)."""
    if "lower" in steps:
        text = text.lower()
    if "punct" in steps:
        text = _PUNCT.sub(" " if "whitespace" in steps else "", text)
    if "articles" in steps:
        text = _ARTICLES.sub(" ", text)
    if "whitespace" in steps:
        text = " ".join(text.split())
    if "strip" in steps or "whitespace" in steps:
        text = text.strip()
    return text


def parse_normalize(name: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).replace("+", ",").split(",")
    steps = tuple(s.strip().lower() for s in items if str(s).strip() and str(s).strip().lower() != "none")
    bad = [s for s in steps if s not in NORMALIZERS]
    if bad:
        raise UsageError(f"metric {name}: unknown normalisation {', '.join(bad)}",
                         f"use a comma list of: {', '.join(NORMALIZERS)} (or none)")
    return steps


class _Match(Metric):
    """1 when the normalised prediction matches the normalised reference, else 0; the value is the mean."""

    test = "mcnemar"
    default_min_effect = 0.01
    unit = "fraction"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.steps = parse_normalize(self.name, self.options["normalize"])
        if self.options["match"] not in ("exact", "prefix", "contains"):
            raise UsageError(f"metric {self.name}: match must be exact, prefix or contains, "
                             f"got {self.options['match']!r}")

    def _hit(self, pred: str, ref: str) -> bool:
        p, r = normalize(pred, self.steps), normalize(ref, self.steps)
        mode = self.options["match"]
        if mode == "exact":
            return p == r
        if mode == "prefix":
            return p.startswith(r) and (len(p) == len(r) or not p[len(r)].isalnum())
        return r in p

    def compute(self, run: EvalRun) -> MetricValue:
        hits = np.fromiter((self._hit(p, r) for p, r in zip(run.predictions, run.references, strict=True)), dtype=float,
                           count=len(run))
        stats = hits.reshape(-1, 1)
        return MetricValue(float(hits.mean()) if len(hits) else float("nan"), stats)

    def settings(self) -> dict[str, Any]:
        return {"norm": "+".join(self.steps) or "none", "match": self.options["match"]}


@register
class ExactMatch(_Match):
    name = "exact_match"
    option_defaults = {"normalize": "strip", "match": "exact"}


@register
class Accuracy(_Match):
    name = "accuracy"
    option_defaults = {"normalize": "lower,punct,articles,whitespace", "match": "exact"}


# --------------------------------------------------------------------------- sacrebleu


def _sacrebleu_version() -> str:
    import sacrebleu

    return sacrebleu.__version__


def bleu_from_sums(totals: np.ndarray, order: int = 4) -> np.ndarray:
    """sacrebleu's corpus BLEU (smooth 'exp', no effective order) for each row of summed stats (B, 2 + 2*order)."""
    totals = np.asarray(totals, dtype=float)
    sys_len, ref_len = totals[:, 0], totals[:, 1]
    correct, total = totals[:, 2:2 + order], totals[:, 2 + order:2 + 2 * order]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / np.maximum(sys_len, 1e-300)),
                                                  0.0), 1.0)
        zero_so_far = np.cumsum(correct == 0, axis=1)  # 'exp' smoothing halves again for each zero-match order
        prec = np.where(correct > 0, 100.0 * correct / total, 100.0 / (2.0 ** zero_so_far * total))
        ok = (total > 0).all(axis=1) & (correct > 0).any(axis=1)
        logs = np.log(np.where(prec > 0, prec, 1.0)).mean(axis=1)
        score = bp * np.exp(logs)
    return np.where(ok, score, 0.0)


def chrf_from_sums(totals: np.ndarray, order: int, beta: float = 2.0) -> np.ndarray:
    """sacrebleu's corpus chrF (effective-order averaging, its default) for each row of summed stats (B, 3*order)."""
    totals = np.asarray(totals, dtype=float).reshape(len(totals), order, 3)
    n_hyp, n_ref, n_match = totals[..., 0], totals[..., 1], totals[..., 2]
    factor = beta ** 2
    valid = (n_hyp > 0) & (n_ref > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(valid, n_match / np.where(n_hyp > 0, n_hyp, 1), 0.0)
        rec = np.where(valid, n_match / np.where(n_ref > 0, n_ref, 1), 0.0)
        eff = valid.sum(axis=1)
        avg_p = np.where(eff > 0, prec.sum(axis=1) / np.maximum(eff, 1), 0.0)
        avg_r = np.where(eff > 0, rec.sum(axis=1) / np.maximum(eff, 1), 0.0)
        denom = factor * avg_p + avg_r
        score = np.where(avg_p + avg_r > 0, 100 * (1 + factor) * avg_p * avg_r / np.where(denom > 0, denom, 1), 0.0)
    return score


class _SacreBLEU(Metric):
    """Corpus metrics from sacrebleu's per-sentence sufficient statistics (one row per sample), so bootstrap
    resamples and paired tests re-aggregate sums instead of re-scoring text. Subclasses give ``_scorer``."""

    def _scorer(self):
        raise NotImplementedError

    def compute(self, run: EvalRun) -> MetricValue:
        scorer = self._scorer()
        stats = np.asarray(scorer._extract_corpus_statistics(run.predictions, [run.references]), dtype=float)
        stats = stats.reshape(len(run), -1)
        return MetricValue(self.aggregate(stats) if len(run) else float("nan"), stats)


@register
class BLEU(_SacreBLEU):
    name = "bleu"
    test = "bootstrap"
    default_min_effect = 1.0
    unit = "BLEU (0-100)"
    option_defaults = {"tokenize": "13a", "lowercase": False}

    def _scorer(self):
        import sacrebleu

        try:
            return sacrebleu.BLEU(tokenize=self.options["tokenize"], lowercase=bool(self.options["lowercase"]))
        except (AssertionError, RuntimeError, ValueError, KeyError) as exc:
            raise UsageError(f"metric bleu: bad option ({exc})", "tokenize is one of sacrebleu's tokenizers: "
                             "13a, intl, zh, ja-mecab, char, none, flores101, spm") from None

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return bleu_from_sums(totals)

    def signature(self) -> str:
        scorer = self._scorer()
        scorer.corpus_score(["a"], [["a"]])  # sacrebleu fills in nrefs only after scoring something
        return scorer.get_signature().format()


@register
class ChrF(_SacreBLEU):
    name = "chrf"
    test = "bootstrap"
    default_min_effect = 1.0
    unit = "chrF (0-100)"
    option_defaults = {"char_order": 6, "word_order": 0, "beta": 2, "lowercase": False}

    def _scorer(self):
        import sacrebleu

        o = self.options
        return sacrebleu.CHRF(char_order=int(o["char_order"]), word_order=int(o["word_order"]), beta=int(o["beta"]),
                              lowercase=bool(o["lowercase"]))

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return chrf_from_sums(totals, int(self.options["char_order"]) + int(self.options["word_order"]),
                              float(self.options["beta"]))

    def signature(self) -> str:
        scorer = self._scorer()
        scorer.corpus_score(["a"], [["a"]])
        return scorer.get_signature().format()


# --------------------------------------------------------------------------- ROUGE


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison-Dix / Hyyro): O(len(b)) big-int steps."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    p, r = overlap / max(n_pred, 1), overlap / max(n_ref, 1)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


class _Rouge(Metric):
    """Mean per-sample ROUGE F1, computed like rouge-score (same tokenizer, n-gram and LCS definitions; the unit
    tests compare the two) but several times faster: each text is tokenised once for all three types and the LCS
    is bit-parallel. ``tokenizer: whitespace`` keeps non-Latin text that rouge-score's tokenizer drops."""

    test = "bootstrap"
    default_min_effect = 0.01
    unit = "F1 (0-1)"
    option_defaults = {"use_stemmer": False, "tokenizer": "default"}
    rouge_type = ""

    def _tokenizer(self):
        kind = self.options["tokenizer"]
        if kind not in ("default", "whitespace"):
            raise UsageError(f"metric {self.name}: tokenizer must be default or whitespace, got {kind!r}")
        stem = None
        if self.options["use_stemmer"]:
            from functools import lru_cache

            from rouge_score.tokenizers import porter

            stem = lru_cache(maxsize=65536)(porter.PorterStemmer().stem)
        cache: dict[str, tuple[str, ...]] = {}

        def tokenize(text: str) -> tuple[str, ...]:
            if text not in cache:
                toks = text.lower().split() if kind == "whitespace" else _NON_ALNUM.sub(" ", text.lower()).split()
                if stem is not None:
                    toks = [stem(t) if len(t) > 3 else t for t in toks]
                    if kind == "default":
                        toks = [t for t in toks if t and _NON_ALNUM.search(t) is None]
                cache[text] = tuple(toks)
            return cache[text]
        return tokenize

    def compute(self, run: EvalRun) -> MetricValue:
        key = f"rouge:{self.options['use_stemmer']}:{self.options['tokenizer']}"
        if key not in run.cache:
            from collections import Counter

            tokenize = self._tokenizer()
            r1, r2, rl = (np.zeros((len(run), 1)) for _ in range(3))
            for i, (pred, ref) in enumerate(zip(run.predictions, run.references, strict=True)):
                p, r = tokenize(pred), tokenize(ref)
                r1[i, 0] = _f1(sum((Counter(p) & Counter(r)).values()), len(p), len(r))
                p2, r2_ = list(zip(p, p[1:], strict=False)), list(zip(r, r[1:], strict=False))
                r2[i, 0] = _f1(sum((Counter(p2) & Counter(r2_)).values()), len(p2), len(r2_))
                rl[i, 0] = _f1(lcs_length(r, p), len(p), len(r)) if p and r else 0.0
            run.cache[key] = {"rouge1": r1, "rouge2": r2, "rougeL": rl}
        stats = run.cache[key][self.rouge_type]
        return MetricValue(float(stats.mean()) if len(stats) else float("nan"), stats)

    def settings(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"type": self.rouge_type, "f": "f1", "stem": "yes" if self.options["use_stemmer"] else "no",
                "tok": self.options["tokenizer"], "compat": "rouge-score-" + version("rouge-score")}


@register
class Rouge1(_Rouge):
    name = "rouge1"
    rouge_type = "rouge1"


@register
class Rouge2(_Rouge):
    name = "rouge2"
    rouge_type = "rouge2"


@register
class RougeL(_Rouge):
    name = "rouge_l"
    rouge_type = "rougeL"
