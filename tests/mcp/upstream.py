"""An MCP server for tollgate's end-to-end tests, built with the official Python SDK.

Serves Streamable HTTP on 127.0.0.1:PORT/mcp and appends every HTTP request it receives
(method, MCP headers, authorization, body) to RECORD as one JSON line, so a test can assert
on what actually arrived: a call tollgate refused must never be there.

Usage: upstream.py PORT RECORD [paged]
  paged  tools/list answers two tools per page (nextCursor), for pagination tests
"""

import asyncio
import json
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ListToolsResult

PORT = int(sys.argv[1])
RECORD = sys.argv[2]
PAGED = sys.argv[3:4] == ["paged"]

# Looks like a GitHub token to the guardrails; the tests check it never reaches the agent.
LEAKED = "ghp_" + "Zx8Kq2LmN4pR7sT1vW3yA5bC6dE9fG0hJ2kL"

class TestServer(MCPServer):
    async def _handle_list_tools(self, ctx, params):
        tools = await self.list_tools()
        if not PAGED:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params and params.cursor else 0
        end = start + 2
        more = str(end) if end < len(tools) else None
        return ListToolsResult(tools=tools[start:end], next_cursor=more)


server = TestServer("tollgate-test-upstream")


@server.tool()
def read_file(path: str) -> str:
    """Reads a file."""
    return f"contents of {path}"


@server.tool()
def write_file(path: str, content: str) -> str:
    """Writes a file."""
    return f"wrote {len(content)} bytes to {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Deletes a file."""
    return f"deleted {path}"


@server.tool()
def search(query: str) -> str:
    """Searches."""
    return f"results for {query}"


@server.tool()
def leak() -> str:
    """Returns a secret and an email address."""
    return f"the deploy token is {LEAKED}; mail ops@example.com"


@server.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Reports progress and logs while it works."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await ctx.info(f"working on step {i + 1}")
    return f"done after {steps} steps"


@server.tool()
async def hang(seconds: float) -> str:
    """Takes its time: for timeouts."""
    await asyncio.sleep(seconds)
    return "finally"


class Recorder:
    """ASGI middleware: records each request, then hands it on unchanged."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        entry = {
            "method": scope["method"],
            "authorization": headers.get("authorization"),
            "session": headers.get("mcp-session-id"),
            "protocol_version": headers.get("mcp-protocol-version"),
            "mcp_method": headers.get("mcp-method"),
            "mcp_name": headers.get("mcp-name"),
            "body": body.decode("utf-8", "replace"),
        }
        with open(RECORD, "a") as f:
            f.write(json.dumps(entry) + "\n")
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def main():
    import uvicorn

    app = server.streamable_http_app()
    config = uvicorn.Config(Recorder(app), host="127.0.0.1", port=PORT, log_level="warning")
    await uvicorn.Server(config).serve()


asyncio.run(main())
