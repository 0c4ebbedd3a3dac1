"""LLM-as-judge: the judge client, its prompts and the parsing of its replies (the metrics are in metrics_judge.py).

The judge is any OpenAI-compatible endpoint (``EndpointBackend``: chat completions, bounded concurrency,
timeouts, retries) or a local model folder (``LocalBackend``: batched generation, the chat template when the
tokenizer has one). Greedy decoding, a few output tokens.

Pairwise (``judge_pairwise``): for each row shared with the baseline the judge sees the question, the reference
and two answers, the candidate's and the baseline verdict's (stored in its ``samples.outputs``), in **both
orders** (candidate first, then baseline first) to cancel position bias. A reply names the better answer as
``[[A]]``, ``[[B]]`` or ``[[TIE]]`` (a bare ``A``/``B``/``TIE`` is accepted too). Per row the candidate scores +1
for a win and -1 for a loss in each order; a positive sum is a win, a negative one a loss, 0 a tie. Orders that
contradict each other (a win one way, a loss the other) are *inconsistent* and count as a tie. Identical answers
are ties without asking the judge.

Rubric (``judge_rubric``): the judge scores one answer 1-5 against a rubric (``[[N]]`` or a leading digit).

Failure is never a silent pass: an unreachable judge, more than ``max_unparseable`` of rows with an unparseable
reply, or more than ``max_inconsistent`` inconsistent rows makes the metric inconclusive with the reason.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmops.errors import InfraError, InputError, UsageError

PAIRWISE_PROMPT = """You compare two answers to the same question. Decide which answer is better: correct, \
helpful, and consistent with the reference answer when one is given. Do not prefer an answer for its position or \
its length.

Question:
{question}

Reference answer:
{reference}

Answer A:
{answer_a}

Answer B:
{answer_b}

Reply with exactly one of [[A]] (A is better), [[B]] (B is better) or [[TIE]] (equally good)."""

RUBRIC_PROMPT = """Score the answer to the question from 1 (poor) to 5 (excellent) against this rubric.

Rubric:
{rubric}

Question:
{question}

Reference answer:
{reference}

Answer:
{answer}

Reply with the score only, as [[1]], [[2]], [[3]], [[4]] or [[5]]."""

CHOICE = re.compile(r"\[\[\s*(A|B|TIE)\s*\]\]", re.I)
SCORE = re.compile(r"\[\[\s*([1-5])\s*\]\]")


def parse_choice(text: str) -> str | None:
    """``A``, ``B`` or ``TIE`` from a judge reply (the last ``[[X]]``, else a bare leading word); None if none."""
    found = CHOICE.findall(text or "")
    if found:
        return found[-1].upper()
    m = re.match(r"\s*\(?\s*(A|B|TIE)\b", text or "", re.I)
    return m.group(1).upper() if m else None


def parse_score(text: str) -> int | None:
    found = SCORE.findall(text or "")
    if found:
        return int(found[-1])
    m = re.match(r"\s*([1-5])\b", text or "")
    return int(m.group(1)) if m else None


def fill(template: str, **values: str) -> str:
    """Replace ``{name}`` placeholders literally (answers may contain braces, so no str.format)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _read(path: str | None, what: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what} {path}: {exc}", "give a UTF-8 text file") from None


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "seconds": round(self.seconds, 4)}


@dataclass
class JudgeConfig:
    """Who judges and how; ``signature()`` goes into the judge metrics' signatures."""

    endpoint: str | None = None
    model_dir: str | None = None
    model: str = ""  # model name sent to the endpoint
    prompt_file: str | None = None  # pairwise prompt (placeholders {question} {reference} {answer_a} {answer_b})
    rubric_file: str | None = None  # the rubric text, or a whole prompt with {answer}
    max_tokens: int = 16
    concurrency: int = 8
    batch_size: int = 16
    timeout: float = 60.0
    retries: int = 2
    api_key_env: str = "OPENAI_API_KEY"
    max_unparseable: float = 0.1
    max_inconsistent: float = 0.25
    usage: Usage = field(default_factory=Usage)
    _client: object = None

    @property
    def configured(self) -> bool:
        return bool(self.endpoint or self.model_dir)

    def pairwise_prompt(self) -> str:
        text = _read(self.prompt_file, "judge prompt") or PAIRWISE_PROMPT
        missing = [k for k in ("{answer_a}", "{answer_b}") if k not in text]
        if missing:
            raise UsageError(f"judge prompt {self.prompt_file} lacks {', '.join(missing)}",
                             "the prompt needs {answer_a} and {answer_b} (and may use {question}, {reference})")
        return text

    def rubric_prompt(self) -> str:
        rubric = _read(self.rubric_file, "judge rubric")
        if rubric is None:
            raise UsageError("judge_rubric needs a rubric", "pass --judge-rubric FILE (the criteria, or a whole "
                             "prompt with {answer})")
        return rubric if "{answer}" in rubric else fill(RUBRIC_PROMPT, rubric=rubric.strip())

    def who(self) -> str:
        return self.model or self.endpoint or Path(self.model_dir or "").name

    def signature(self, prompt: str) -> dict:
        return {"judge": self.who(), "prompt": hashlib.sha256(prompt.encode()).hexdigest()[:12], "temp": 0,
                "max_tokens": self.max_tokens}

    def client(self):
        if self._client is None:
            if self.endpoint:
                from llmops.eval.backends.endpoint import EndpointBackend

                self._client = EndpointBackend(self.endpoint, model=self.model, max_new_tokens=self.max_tokens,
                                               concurrency=self.concurrency, timeout=self.timeout,
                                               retries=self.retries, api_key_env=self.api_key_env,
                                               show_progress=False)
            elif self.model_dir:
                from llmops.eval.backends.local import LocalBackend

                self._client = LocalBackend(self.model_dir, batch_size=self.batch_size,
                                            max_new_tokens=self.max_tokens, show_progress=False)
            else:
                raise UsageError("the judge metrics need a judge", "pass --judge-endpoint URL or "
                                 "--judge-model-dir FOLDER")
        return self._client

    def ask(self, prompts: list[str]) -> list[str]:
        """The judge's replies, in order. Raises JudgeUnavailable when it cannot be reached or loaded."""
        from llmops.eval.data import Sample

        if not prompts:
            return []
        client = self.client()
        chat = True
        if self.model_dir:
            client.load()
            chat = bool(getattr(client.tokenizer, "chat_template", None))
        samples = [Sample(f"judge-{i}", "", i + 1, messages=[{"role": "user", "content": p}]) if chat
                   else Sample(f"judge-{i}", "", i + 1, prompt=p) for i, p in enumerate(prompts)]
        started = time.perf_counter()
        try:
            gens = client.generate(samples)
        except InfraError as exc:
            raise JudgeUnavailable(str(exc)) from None
        self.usage.calls += len(prompts)
        self.usage.seconds += time.perf_counter() - started
        self.usage.prompt_tokens += sum(g.prompt_tokens or 0 for g in gens.items)
        self.usage.output_tokens += sum(g.output_tokens or 0 for g in gens.items)
        return [g.text for g in gens.items]


class JudgeUnavailable(Exception):
    """The judge could not be asked (unreachable, refused, not loadable): the metric becomes inconclusive."""
