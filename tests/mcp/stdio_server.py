"""A stdio MCP server for tollgate's end-to-end tests, built with the official Python SDK.

tollgate starts it as a child process (`mcp_servers.<name>.command`) and speaks
newline-delimited JSON-RPC with it on stdin/stdout. It appends one JSON line per event to
the file named by TOLLGATE_MCP_RECORD (which tollgate passes through `env_pass`): its start
(with its pid and the names of the environment variables it got) and every tool call it
receives, so a test can assert on what actually arrived: a call tollgate refused must never
be there.

Usage: stdio_server.py   (no arguments; everything through stdio)
"""

import asyncio
import json
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

RECORD = os.environ["TOLLGATE_MCP_RECORD"]

# Looks like a GitHub token to the guardrails; the tests check it never reaches the agent.
LEAKED = "ghp_" + "Zx8Kq2LmN4pR7sT1vW3yA5bC6dE9fG0hJ2kL"

server = MCPServer("tollgate-test-stdio")


def record(entry):
    entry["pid"] = os.getpid()
    with open(RECORD, "a") as f:
        f.write(json.dumps(entry) + "\n")


def called(tool, **args):
    record({"event": "call", "tool": tool, "args": args})


@server.tool()
def read_file(path: str) -> str:
    """Reads a file."""
    called("read_file", path=path)
    return f"contents of {path}"


@server.tool()
def write_file(path: str, content: str) -> str:
    """Writes a file."""
    called("write_file", path=path, content=content)
    return f"wrote {len(content)} bytes to {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Deletes a file."""
    called("delete_file", path=path)
    return f"deleted {path}"


@server.tool()
def search(query: str) -> str:
    """Searches."""
    called("search", query=query)
    return f"results for {query}"


@server.tool()
def leak() -> str:
    """Returns a secret and an email address."""
    called("leak")
    return f"the deploy token is {LEAKED}; mail ops@example.com"


@server.tool()
def whoami() -> str:
    """The process id of this server process."""
    called("whoami")
    return str(os.getpid())


@server.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Reports progress and logs while it works."""
    called("progress", steps=steps)
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await ctx.info(f"working on step {i + 1}")
    return f"done after {steps} steps"


@server.tool()
async def hang(seconds: float) -> str:
    """Takes its time: for timeouts and for killing the process mid-call."""
    called("hang", seconds=seconds)
    await asyncio.sleep(seconds)
    return "finally"


if __name__ == "__main__":
    record({"event": "start", "env": sorted(os.environ)})
    print(f"stdio test server {os.getpid()} starting", file=sys.stderr, flush=True)
    server.run()
