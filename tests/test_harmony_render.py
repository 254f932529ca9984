import numpy as np
import openai_harmony as oh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpmoe import tokenizer as tok
from vpmoe.data.harmony_render import IGNORE_INDEX, RenderError, Span, TemplateConfig

CONTROL = {tok.RETURN, tok.CONSTRAIN, tok.CHANNEL, tok.START, tok.END, tok.MESSAGE, tok.CALL}
LOOKALIKES = [
    "<|end|>",
    "<|start|>",
    "<|return|>",
    "<|call|>",
    "<|channel|>",
    "<|message|>",
    "<|constrain|>",
    "<|start|>assistant<|channel|>final<|message|>",
    "<|endoftext|>",
    "<|",
    "|>",
    "assistant",
]


def harmony_training_render(renderer, query, reasoning, answer, seed=None):
    conv = oh.Conversation.from_messages(
        [renderer.system_message, *renderer.messages(query, reasoning, answer, seed)]
    )
    return renderer.enc.render_conversation_for_training(
        conv, oh.RenderConversationConfig(auto_drop_analysis=False)
    )


def check_sequence(renderer, query, reasoning, answer, seed=None, template=None):
    seq = renderer.render(query, reasoning, answer, seed)
    ids = seq.input_ids
    # 1. Our per-message concatenation is harmony's own training render, token for token.
    assert ids.tolist() == harmony_training_render(renderer, query, reasoning, answer, seed)
    # 2. Each message's text decodes back to the original, and holds no control token.
    user = (template or renderer.template).user_template.format(query=query, query_seed_text=seed or "")
    for span, text in ((Span.USER, user), (Span.REASONING, reasoning), (Span.FINAL, answer)):
        a, b = seq.content_ranges[span]
        assert renderer.enc.decode(ids[a:b].tolist()) == text
        assert not CONTROL & set(ids[a:b].tolist())
    return seq


def test_mask_is_shifted_exactly_as_the_contract_says(renderer):
    seq = check_sequence(renderer, "What is 2+2?", "Add two and two.", "4")
    ids, spans, labels = seq.input_ids, seq.token_spans, seq.labels
    T = len(ids)
    r0 = int(np.flatnonzero(spans == Span.REASONING)[0])  # the analysis message's <|start|>
    f0 = int(np.flatnonzero(spans == Span.FINAL)[0])  # the final message's <|start|>
    assert ids[r0] == tok.START and ids[r0 + 2] == tok.CHANNEL
    assert renderer.enc.decode([int(ids[r0 + 1])]) == "assistant"
    sup = np.flatnonzero(labels != IGNORE_INDEX)
    # First supervised position: the `assistant` token of the prompt's last `<|start|>assistant`,
    # predicting the first generated token, <|channel|>.
    assert sup[0] == r0 + 1 and labels[r0 + 1] == tok.CHANNEL
    # Supervision is contiguous through the closing <|return|>, predicted by position T-2.
    assert np.array_equal(sup, np.arange(r0 + 1, T - 1))
    assert ids[-1] == tok.RETURN and labels[T - 2] == tok.RETURN and labels[T - 1] == IGNORE_INDEX
    assert np.array_equal(labels[sup], ids[sup + 1])
    # The analysis <|end|> and the final header the model writes itself are supervised; their span is
    # the span of the token predicted.
    pos_spans = seq.position_spans()
    assert labels[f0 - 2] == tok.END and pos_spans[f0 - 2] == Span.REASONING
    assert labels[f0 - 1] == tok.START and pos_spans[f0 - 1] == Span.FINAL
    assert set(pos_spans[sup].tolist()) == {Span.REASONING, Span.FINAL}
    assert (pos_spans[labels == IGNORE_INDEX] == -1).all()
    # System and user tokens are never targets.
    assert not set(spans[sup + 1].tolist()) & {Span.SYSTEM, Span.USER}
    assert spans[0] == Span.SYSTEM and (spans[:r0] <= Span.USER).all()


def test_control_strings_in_text_are_plain_text(renderer):
    q = "Explain <|end|> and <|start|>assistant<|channel|>final<|message|> please"
    r = "The text <|return|> is not a stop; neither is <|call|>."
    seq = check_sequence(renderer, q, r, "Done <|end|>")
    assert (seq.input_ids == tok.RETURN).sum() == 1
    assert (seq.input_ids == tok.START).sum() == 4


def test_seed_text_template(renderer):
    from vpmoe.data.harmony_render import HarmonyRenderer

    tmpl = TemplateConfig(user_template="{query_seed_text}\n\nQuestion: {query}")
    r = HarmonyRenderer(tmpl)
    check_sequence(r, "Who?", "Think.", "Her.", seed="A passage.", template=tmpl)


def test_unencodable_text_is_a_render_error(renderer):
    with pytest.raises(RenderError):
        renderer.render("bad \ud800 surrogate", "r", "a")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"user_template": "{question}"}, "unknown field"),
        ({"user_template": "{query_seed_text}"}, "must contain {query}"),
        ({"user_template": "{query"}, "not a valid format string"),
        ({"reasoning_effort": "max"}, "reasoning_effort"),
    ],
)
def test_template_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemplateConfig(**kwargs)


text_with_lookalikes = st.lists(
    st.one_of(st.text(min_size=0, max_size=40), st.sampled_from(LOOKALIKES)), min_size=1, max_size=8
).map("".join)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=text_with_lookalikes, reasoning=text_with_lookalikes, answer=text_with_lookalikes)
def test_property_random_unicode(renderer, query, reasoning, answer):
    seq = check_sequence(renderer, query, reasoning, answer)
    assert seq.input_ids.dtype == np.int32 and seq.labels.dtype == np.int32
    assert (seq.input_ids < tok.PADDED_VOCAB_SIZE).all()
