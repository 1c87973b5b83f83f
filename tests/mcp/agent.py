"""An agent for tollgate's MCP end-to-end tests: the official Python SDK client.

Usage: agent.py URL KEY MODE SCENARIO
  MODE      legacy (initialize handshake, Mcp-Session-Id) or 2026-07-28 (stateless)
  SCENARIO  a function below; prints what the agent saw as one JSON object
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

URL, KEY, MODE, SCENARIO = sys.argv[1:5]


def client(**kw):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {KEY}"})
    return Client(streamable_http_client(URL, http_client=http), mode=MODE, **kw)


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def call(c, name, args):
    r = await c.call_tool(name, args)
    return {"error": bool(r.is_error), "text": text_of(r)}


async def policy():
    async with client() as c:
        tools = await c.list_tools()
        return {
            "tools": sorted(t.name for t in tools.tools),
            "read_ok": await call(c, "read_file", {"path": "/srv/notes.txt"}),
            "read_outside": await call(c, "read_file", {"path": "/etc/passwd"}),
            "delete": await call(c, "delete_file", {"path": "/srv/notes.txt"}),
            "secret_arg": await call(
                c, "search", {"query": "token ghp_Zx8Kq2LmN4pR7sT1vW3yA5bC6dE9fG0hJ2kL"}
            ),
            "leak": await call(c, "leak", {}),
            "write": await call(c, "write_file", {"path": "/srv/a", "content": "hi"}),
        }


async def write_again():
    async with client() as c:
        return {"write": await call(c, "write_file", {"path": "/srv/a", "content": "hi"})}


async def progress():
    seen = {"progress": [], "logs": []}

    async def on_log(params):
        seen["logs"].append(str(params.data))

    async with client(logging_callback=on_log, log_level="info") as c:

        async def on_progress(progress, total, message):
            seen["progress"].append(progress)

        r = await c.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
        seen["result"] = text_of(r)
    return seen


async def whoami():
    """The pid of the server process that answered (the stdio test server's `whoami`)."""
    async with client() as c:
        return {"whoami": await call(c, "whoami", {})}


async def searches():
    """Eight concurrent searches: the budget affords only some of them."""
    async with client() as c:
        results = await asyncio.gather(
            *(call(c, "search", {"query": f"q{i}"}) for i in range(8))
        )
    return {"results": results}


async def federated():
    """At /mcp: both servers' tools, prefixed, each call routed by its prefix."""
    async with client() as c:
        tools = await c.list_tools()
        return {
            "tools": sorted(t.name for t in tools.tools),
            "descriptions": {t.name: t.description for t in tools.tools},
            "files_read": await call(c, "files__read_file", {"path": "/srv/notes.txt"}),
            "notes_search": await call(c, "notes__search", {"query": "minutes"}),
            "notes_read": await call(c, "notes__read_file", {"path": "/srv/notes.txt"}),
            "files_delete": await call(c, "files__delete_file", {"path": "/srv/x"}),
            "unknown": await call(c, "nowhere__search", {"query": "x"}),
            "unprefixed": await call(c, "search", {"query": "x"}),
            "notes_leak": await call(c, "notes__leak", {}),
        }


async def fed_write():
    async with client() as c:
        return {"write": await call(c, "files__write_file", {"path": "/srv/a", "content": "hi"})}


async def fed_progress():
    seen = {"progress": []}
    async with client() as c:

        async def on_progress(progress, total, message):
            seen["progress"].append(progress)

        r = await c.call_tool("files__progress", {"steps": 3}, progress_callback=on_progress)
        seen["result"] = text_of(r)
    return seen


async def fed_searches():
    """Eight concurrent federated searches: the budget affords only some of them."""
    async with client() as c:
        results = await asyncio.gather(
            *(call(c, "files__search", {"query": f"q{i}"}) for i in range(8))
        )
    return {"results": results}


async def tools_only():
    async with client() as c:
        tools = await c.list_tools()
        return {"tools": sorted(t.name for t in tools.tools)}


async def main():
    out = await globals()[SCENARIO]()
    print(json.dumps(out))


asyncio.run(main())
