"""Measures what tollgate adds to an MCP tools/call: the same calls, with the official SDK
client, straight to the server and through tollgate. Not a test: a benchmark whose numbers
go into docs/mcp.md.

Usage: overhead.py DIRECT_URL GATEWAY_URL KEY [CALLS]
"""

import asyncio
import json
import statistics
import sys
import time

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

DIRECT, GATEWAY, KEY = sys.argv[1:4]
CALLS = int(sys.argv[4]) if len(sys.argv) > 4 else 200


async def run(url, headers):
    http = create_mcp_http_client(headers=headers)
    async with Client(streamable_http_client(url, http_client=http), mode="legacy") as c:
        for _ in range(20):  # warm up connections and caches
            await c.call_tool("read_file", {"path": "/srv/warm"})
        times = []
        for i in range(CALLS):
            t = time.perf_counter()
            await c.call_tool("read_file", {"path": f"/srv/{i}"})
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p90_ms": round(times[int(len(times) * 0.9)], 2),
        "mean_ms": round(statistics.mean(times), 2),
    }


async def main():
    direct = await run(DIRECT, {})
    gateway = await run(GATEWAY, {"Authorization": f"Bearer {KEY}"})
    print(json.dumps({"calls": CALLS, "direct": direct, "gateway": gateway}))


asyncio.run(main())
