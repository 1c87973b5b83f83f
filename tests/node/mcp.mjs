// An agent written with the official MCP TypeScript SDK (@modelcontextprotocol/sdk), its
// `Client` and `StreamableHTTPClientTransport` pointed at tollgate's `/mcp/{server}` with
// the tollgate key as a bearer token: the handshake, a filtered tools/list, an allowed
// call, a call whose result tollgate redacts, refused calls as `isError` results, and the
// session ended with DELETE. MCP_URL comes from the Rust test, the key as OPENAI_API_KEY.

import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { keyFrom, main } from './lib.mjs';

function textOf(result) {
  return result.content
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('');
}

async function call(client, name, args) {
  const result = await client.callTool({ name, arguments: args });
  return { error: result.isError === true, text: textOf(result) };
}

main(async () => {
  const transport = new StreamableHTTPClientTransport(new URL(keyFrom('MCP_URL')), {
    requestInit: { headers: { Authorization: `Bearer ${keyFrom('OPENAI_API_KEY')}` } },
    // A retried stream would hide a failure; the GET stream is not what this tests.
    reconnectionOptions: {
      maxRetries: 0,
      initialReconnectionDelay: 1000,
      maxReconnectionDelay: 1000,
      reconnectionDelayGrowFactor: 1,
    },
  });
  const client = new Client({ name: 'tollgate-node-agent', version: '1.0.0' });
  await client.connect(transport);
  const session = transport.sessionId ?? null;
  const server = client.getServerVersion();
  const { tools } = await client.listTools();
  const out = {
    session,
    protocol: transport.protocolVersion ?? null,
    server: server?.name ?? null,
    tools: tools.map((t) => t.name).sort(),
    read_ok: await call(client, 'read_file', { path: '/srv/notes.txt' }),
    leak: await call(client, 'leak', {}),
    delete: await call(client, 'delete_file', { path: '/srv/notes.txt' }),
    read_outside: await call(client, 'read_file', { path: '/etc/passwd' }),
  };
  for (const refused of ['delete', 'read_outside']) {
    assert.equal(out[refused].error, true, `${refused} is refused as a tool result`);
  }
  // The session is tollgate's own, and ends at tollgate and at the server.
  await transport.terminateSession();
  out.ended = transport.sessionId === undefined;
  await client.close();
  return out;
});
