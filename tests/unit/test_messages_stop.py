"""Anthropic's stop reasons for a stop sequence: when the engine says one of the request's ``stop_sequences`` ended
the answer (vLLM's ``stop_reason`` on the choice), ``stop_reason`` is ``stop_sequence`` with the matched string, as
Anthropic answers, whole and streamed; otherwise (llama-server says nothing of it, an EOS) ``end_turn`` and null.
Checked against the Anthropic SDK's own types."""

from __future__ import annotations

import json

from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from llmctl.app.controller.protocols.messages import MessagesStream, from_chat

EVENTS: TypeAdapter = TypeAdapter(RawMessageStreamEvent)
STOPS = ["###", "END"]


def _whole(choice_extra: dict) -> dict:
    return {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "one two"},
                         **choice_extra}], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}


def test_a_whole_answer_ended_by_a_stop_sequence_says_which() -> None:
    answer = Message.model_validate(from_chat(_whole({"stop_reason": "END"}), "m", STOPS))
    assert (answer.stop_reason, answer.stop_sequence) == ("stop_sequence", "END")
    # no stop string named (llama-server), an EOS (vLLM: null), or one the request did not send: end_turn
    for extra in ({}, {"stop_reason": None}, {"stop_reason": 2}, {"stop_reason": "other"}):
        answer = Message.model_validate(from_chat(_whole(extra), "m", STOPS))
        assert (answer.stop_reason, answer.stop_sequence) == ("end_turn", None)
    answer = Message.model_validate(from_chat(_whole({"stop_reason": "END"}), "m"))  # the request sent none
    assert (answer.stop_reason, answer.stop_sequence) == ("end_turn", None)


def _stream(final: dict) -> list:
    translator = MessagesStream("m", STOPS)
    out = b"".join([*translator.feed({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "one"}}]}),
                    *translator.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", **final}]}),
                    *translator.feed({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}),
                    *translator.finish()])
    events = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    return [EVENTS.validate_python(e) for e in events if e["type"] != "ping"]  # a ping has no type in the union


def test_a_streamed_answer_ended_by_a_stop_sequence_says_which() -> None:
    delta = next(e for e in _stream({"stop_reason": "###"}) if e.type == "message_delta").delta
    assert (delta.stop_reason, delta.stop_sequence) == ("stop_sequence", "###")
    delta = next(e for e in _stream({}) if e.type == "message_delta").delta
    assert (delta.stop_reason, delta.stop_sequence) == ("end_turn", None)
