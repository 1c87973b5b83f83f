"""Validates gated bodies and streams with the official openai SDK's own types and stream
accumulators. Reads cases as JSON on stdin, prints one JSON object of results."""

import json
import sys

from pydantic import TypeAdapter
from openai import omit
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

try:
    import inspect

    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import Message, RawMessageStreamEvent
except ImportError:  # the e2e venv carries only the openai SDK
    accumulate_event = None

cases = json.load(sys.stdin)
out = {"chat_completions": [], "responses": [], "chat_streams": [], "responses_streams": []}

for body in cases["chat_completions"]:
    c = ChatCompletion.model_validate(body)
    out["chat_completions"].append(
        [
            {
                "content": ch.message.content,
                "tool_calls": [t.id for t in ch.message.tool_calls or []],
                "finish_reason": ch.finish_reason,
            }
            for ch in c.choices
        ]
    )

for body in cases["responses"]:
    r = Response.model_validate(body)
    out["responses"].append({"output_text": r.output_text, "types": [i.type for i in r.output]})

for chunks in cases["chat_streams"]:
    state = ChatCompletionStreamState()
    for raw in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(raw))
    final = state.get_final_completion()
    out["chat_streams"].append(
        [
            {
                "content": ch.message.content,
                "tool_calls": [
                    {"id": t.id, "name": t.function.name, "arguments": t.function.arguments}
                    for t in ch.message.tool_calls or []
                ],
                "finish_reason": ch.finish_reason,
            }
            for ch in final.choices
        ]
    )

adapter = TypeAdapter(ResponseStreamEvent)
for events in cases["responses_streams"]:
    state = ResponseStreamState(input_tools=[], text_format=omit)
    for raw in events:
        for _ in state.handle_event(adapter.validate_python(raw)):
            pass
    completed = [e for e in events if e["type"] == "response.completed"][-1]["response"]
    final = Response.model_validate(completed)
    out["responses_streams"].append(
        {
            "output_text": final.output_text,
            "calls": [i.name for i in final.output if i.type == "function_call"],
        }
    )



def anthropic_summary(message):
    return {
        "content": [
            {"type": b.type, "text": b.text} if b.type == "text" else {"type": b.type, "name": b.name, "input": b.input}
            for b in message.content
        ],
        "stop_reason": message.stop_reason,
    }


if accumulate_event is None:
    out["anthropic"] = None
else:
    out["anthropic"] = {"messages": [], "streams": []}
    for body in cases["anthropic_messages"]:
        out["anthropic"]["messages"].append(anthropic_summary(Message.model_validate(body)))
    events_adapter = TypeAdapter(RawMessageStreamEvent)
    extra = {"json_bufs": {}} if "json_bufs" in inspect.signature(accumulate_event).parameters else {}
    for events in cases["anthropic_streams"]:
        snapshot = None
        bufs = {"json_bufs": {}} if extra else {}
        for raw in events:
            if raw["type"] == "ping":  # the SDK's SSE reader skips pings
                continue
            snapshot = accumulate_event(event=events_adapter.validate_python(raw), current_snapshot=snapshot, **bufs)
        out["anthropic"]["streams"].append(anthropic_summary(snapshot))

print(json.dumps(out))
