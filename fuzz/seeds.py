#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from the tests' fixtures.

Each target reads a few control bytes before its payload (see fuzz/src/lib.rs and the
targets' docs); a seed is a fixture with such a header. Run it again when fixtures change:
    python3 fuzz/seeds.py
The seeds are committed; what the fuzzer finds beyond them goes to fuzz/corpus/ (ignored).
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"
# A seed larger than this teaches the fuzzer nothing a smaller one does not, and slows it.
MAX_SEED = 8 * 1024
# Control byte of each API shape (tollgate_fuzz::pricing_api).
API = {"chat": 0, "responses": 1, "anthropic": 2, "completions": 3, "embeddings": 4}
# Number of sample kinds the redactor target picks from (guardrails samples::value_kinds).
SAMPLE_KINDS = 37


def api_of(name: str) -> int:
    for prefix, code in API.items():
        if name.startswith(prefix):
            return code
    return 0


def write(target: str, header: bytes, payload: bytes) -> None:
    data = header + payload
    if len(data) > MAX_SEED:
        return
    directory = OUT / target
    directory.mkdir(parents=True, exist_ok=True)
    # Named by content, like libFuzzer's own corpus files, so reruns are stable.
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def sse_from_jsonl(text: str, chat: bool) -> bytes:
    events = [f"data: {line}\n\n" for line in text.splitlines() if line.strip()]
    if chat:
        events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def streams() -> None:
    for path in sorted((ROOT / "toolcalls/tests/fixtures").glob("*.sse")):
        body = path.read_bytes()
        api = api_of(path.name)
        write("sse_stream", bytes([api, 0, 40, 7]), body)
        # The same stream with CRLF line endings, and with every call decided at the end.
        write("sse_stream", bytes([api, 1, 0, 0x83]), body.replace(b"\n", b"\r\n"))
    for path in sorted((ROOT / "pricing/tests/fixtures/streams").glob("*.jsonl")):
        api = api_of(path.name)
        write("sse_stream", bytes([api, 0, 64, 3]), sse_from_jsonl(path.read_text(), api == 0))


def texts() -> list[str]:
    """Message texts from the request fixtures: what a model reads and writes."""
    found: list[str] = []

    def walk(v) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("content", "text", "instructions", "input") and isinstance(x, str):
                    found.append(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for path in sorted((ROOT / "toolcalls/tests/fixtures").glob("*.json")):
        walk(json.loads(path.read_text()))
    corpus = json.loads((ROOT / "pricing/tests/fixtures/corpus/chat_corpus.json").read_text())
    for entry in corpus[:20]:
        walk(entry["body"])
    return [t for t in dict.fromkeys(found) if t.strip()]


def redactor() -> None:
    samples = texts()
    for kind in range(SAMPLE_KINDS):
        text = samples[kind % len(samples)]
        # Guard modes cycle through redact, block and log; the seed places the sample.
        write("stream_redactor", bytes([kind % 32, kind, 17 * kind % 256, kind]), text.encode())


def bodies() -> None:
    for path in sorted((ROOT / "toolcalls/tests/fixtures").glob("*_request*.json")):
        write("request_json", bytes([api_of(path.name), 0, 100]), path.read_bytes())
    corpus = json.loads((ROOT / "pricing/tests/fixtures/corpus/chat_corpus.json").read_text())
    # Every 8th of the 130 requests: names, images, tools and long texts all appear.
    for entry in corpus[::8]:
        write("request_json", bytes([0, 1, 0]), json.dumps(entry["body"]).encode())

    for path in sorted((ROOT / "toolcalls/tests/fixtures").glob("*_response*.json")):
        for decisions in range(3):
            write("response_json", bytes([api_of(path.name), decisions]), path.read_bytes())
    for path in sorted((ROOT / "pricing/tests/fixtures/usage").glob("*.json")):
        write("response_json", bytes([api_of(path.name), 0]), path.read_bytes())


def configs() -> None:
    for doc in ["README.md", "docs/config.md"]:
        text = (ROOT / doc).read_text()
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
            write("config_yaml", b"", block.encode())
    tests = (ROOT / "config/tests/validation.rs").read_text()
    for block in re.findall(r'r#"(.*?)"#', tests, re.S):
        write("config_yaml", b"", block.encode())
    # The bad configs the validation tests feed in, as Rust string literals.
    for literal in re.findall(r'(?:errors|from_yaml)\(\s*"((?:[^"\\]|\\.)*)"', tests, re.S):
        literal = re.sub(r"\\\n\s*", "", literal)
        text = literal.encode().decode("unicode_escape").encode("latin-1").decode("utf-8")
        write("config_yaml", b"", text.encode())


def findings() -> None:
    """Inputs that once broke an invariant (the regression tests hold the same cases)."""
    big = 2**64 - 1
    usage = {"usage": {"input_tokens": big, "cache_read_input_tokens": 1, "output_tokens": 1}}
    write("response_json", bytes([API["anthropic"], 0]), json.dumps(usage).encode())
    call = {"type": "function_call", "call_id": "call_1", "name": "rm", "arguments": "{}"}
    final_only = {"type": "response.completed", "response": {"output": [call]}}
    write("sse_stream", bytes([API["responses"], 0, 0, 0]), f"data: {json.dumps(final_only)}\n\n".encode())
    block = {"type": "tool_use", "id": "toolu_1", "name": "rm", "input": {}}
    twice = "".join(
        f"data: {json.dumps(e)}\n\n"
        for i in (0, 1)
        for e in ({"type": "content_block_start", "index": i, "content_block": block},
                  {"type": "content_block_stop", "index": i})
    )
    write("sse_stream", bytes([API["anthropic"], 0, 0, 0]), twice.encode())
    # A Telegram bot token after "tELE" (read as "tel"): the phone rule took its digits.
    tele = b"\x00tELEot_tspot_t\xff\xff\x03I\xc4\xab\xdf\x91\x00\x00\x00\xe2\xff"
    write("stream_redactor", bytes([0x0B, 0x1F, 0xBB, 0x1B]), tele)
    key = "0" * 43 + "\u00fc" + "0" * 19
    write("config_yaml", b"", f"keys: [{{ id: k, agent: a, sha256: {key} }}]".encode())


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    streams()
    redactor()
    bodies()
    configs()
    findings()
    for directory in sorted(OUT.iterdir()):
        files = list(directory.iterdir())
        size = sum(f.stat().st_size for f in files)
        print(f"{directory.name}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
