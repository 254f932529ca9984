"""SYNTH rows to full Harmony training sequences, with per-token spans and the distillation loss mask.

One row becomes four Harmony messages, rendered by `openai_harmony` itself:

    system    <|start|>system<|message|>{SystemContent}<|end|>
    user      <|start|>user<|message|>{user_template(query, seed text)}<|end|>
    reasoning <|start|>assistant<|channel|>analysis<|message|>{synthetic_reasoning}<|end|>
    final     <|start|>assistant<|channel|>final<|message|>{synthetic_answer}<|return|>

Each message is rendered on its own (`enc.render(message)`) and the pieces concatenated, with the last
`<|end|>` swapped for `<|return|>`; that equals `render_conversation_for_training` with
`auto_drop_analysis=False` (tests/test_harmony_render.py checks it) and gives exact message boundaries,
which harmony's API does not return. Message text is encoded as ordinary text: a literal `<|end|>` in a
query is a handful of text tokens, never the control token.

Loss mask (docs/distillation_mechanics.md, "position t predicts token t+1"): at inference the prompt is
everything before the analysis message plus `<|start|>assistant`; the model then writes
`<|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>final<|message|>...<|return|>`.
Position t is supervised iff token t+1 is one of those generated tokens, so `labels[t] = input_ids[t+1]`
for t in [g-1, T-2], where g is the index of the analysis message's `<|channel|>`, and -100 elsewhere.
A supervised position's span is the span of the token it predicts: `token_spans[t+1]`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from vpmoe import tokenizer as tok

IGNORE_INDEX = -100


class Span(IntEnum):
    """Which message a token belongs to (its control tokens included)."""

    SYSTEM = 0
    USER = 1
    REASONING = 2
    FINAL = 3


# Spans the student is trained on; every supervised position falls in one of these.
LOSS_SPANS = (Span.REASONING, Span.FINAL)

_TEMPLATE_FIELDS = {"query", "query_seed_text"}
_EFFORTS = {"low", "medium", "high"}


class RenderError(ValueError):
    """A row's text could not be rendered (e.g. a lone surrogate that is not valid Unicode text)."""


@dataclass(kw_only=True)
class TemplateConfig:
    """How a SYNTH row is phrased as a Harmony conversation (docs/synth_preprocess.md, "Template")."""

    # Harmony SystemContent fields; the defaults are GPT-OSS's own (SystemContent.new()), with no date
    # so that renders do not depend on the day they ran.
    model_identity: str = "You are ChatGPT, a large language model trained by OpenAI."
    reasoning_effort: str = "medium"
    knowledge_cutoff: str = "2024-06"
    conversation_start_date: str | None = None
    # Python format string for the user message; fields: {query}, {query_seed_text}.
    # "{query}" (default) leaves the seed passage out: SYNTH's reasoning is written as if recalled.
    user_template: str = "{query}"

    def __post_init__(self) -> None:
        if self.reasoning_effort not in _EFFORTS:
            raise ValueError(
                f"template.reasoning_effort must be one of {sorted(_EFFORTS)}, got {self.reasoning_effort!r}"
            )
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.user_template) if f is not None}
        except ValueError as e:
            raise ValueError(f"template.user_template is not a valid format string: {e}") from e
        unknown = fields - _TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"template.user_template uses unknown field(s) {sorted(unknown)}; allowed: {sorted(_TEMPLATE_FIELDS)}"
            )
        if "query" not in fields:
            raise ValueError("template.user_template must contain {query}")

    @property
    def uses_seed_text(self) -> bool:
        return "{query_seed_text}" in self.user_template


@dataclass(frozen=True)
class RenderedSequence:
    input_ids: np.ndarray  # int32 [T]
    token_spans: np.ndarray  # int8 [T], Span values
    labels: np.ndarray  # int32 [T], input_ids shifted left, IGNORE_INDEX where unsupervised
    # [start, end) of each message's text (between `<|message|>` and its closing token), for checks.
    content_ranges: dict[Span, tuple[int, int]]

    def position_spans(self) -> np.ndarray:
        """Span of each position's target (token t+1); -1 where the position is unsupervised."""
        return position_spans(self.token_spans, self.labels)


def position_spans(token_spans: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.full(labels.shape, -1, dtype=np.int8)
    sup = labels[:-1] != IGNORE_INDEX
    out[:-1][sup] = token_spans[1:][sup]
    return out


class HarmonyRenderer:
    """Renders (query, reasoning, answer[, seed text]) into a `RenderedSequence`."""

    def __init__(self, template: TemplateConfig) -> None:
        import openai_harmony as oh

        self._oh = oh
        self.template = template
        self.enc = tok.load_harmony()
        system = (
            oh.SystemContent.new()
            .with_model_identity(template.model_identity)
            .with_reasoning_effort(oh.ReasoningEffort(template.reasoning_effort.capitalize()))
            .with_knowledge_cutoff(template.knowledge_cutoff)
        )
        if template.conversation_start_date is not None:
            system = system.with_conversation_start_date(template.conversation_start_date)
        self.system_message = oh.Message.from_role_and_content(oh.Role.SYSTEM, system)
        # The system message is identical for every row: render it once.
        self._system_ids = self.enc.render(self.system_message)

    def _message(self, role, text: str, channel: str | None = None):
        msg = self._oh.Message.from_role_and_content(role, text)
        return msg.with_channel(channel) if channel else msg

    def messages(self, query: str, reasoning: str, answer: str, seed_text: str | None = None) -> list:
        """The Harmony messages of one row (used by tests to compare with harmony's full render)."""
        oh = self._oh
        user = self.template.user_template.format(query=query, query_seed_text=seed_text or "")
        return [
            self._message(oh.Role.USER, user),
            self._message(oh.Role.ASSISTANT, reasoning, "analysis"),
            self._message(oh.Role.ASSISTANT, answer, "final"),
        ]

    def render(
        self, query: str, reasoning: str, answer: str, seed_text: str | None = None
    ) -> RenderedSequence:
        try:
            parts = [self._system_ids] + [
                self.enc.render(m) for m in self.messages(query, reasoning, answer, seed_text)
            ]
        except Exception as e:  # harmony's Rust core rejects text it cannot serialize
            raise RenderError(f"harmony could not render the text: {e}") from e
        if parts[-1][-1] != tok.END:
            raise RenderError(f"final message does not end with <|end|> (got id {parts[-1][-1]})")
        lengths = [len(p) for p in parts]
        ids = np.concatenate([np.asarray(p, dtype=np.int32) for p in parts])
        ids[-1] = tok.RETURN
        spans = np.repeat(np.array([s.value for s in Span], dtype=np.int8), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        content_ranges = {}
        for span, part, start in zip(Span, parts, starts, strict=True):
            # Header ends at the message's first <|message|>; text never contains that id.
            header = part.index(tok.MESSAGE) + 1
            content_ranges[span] = (int(start + header), int(start + len(part) - 1))
        reasoning_start = int(starts[Span.REASONING])
        # First generated token: the analysis message's <|channel|> (the prompt ends `<|start|>assistant`).
        first_generated = reasoning_start + parts[Span.REASONING].index(tok.CHANNEL)
        labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
        labels[first_generated - 1 : -1] = ids[first_generated:]
        return RenderedSequence(
            input_ids=ids, token_spans=spans, labels=labels, content_ranges=content_ranges
        )
