// Tool calls proposed by the model, whole and streamed through the SDK's helper: an
// allowed call arrives intact; a denied one never reaches the client, which gets an
// explanation instead and no dangling call; of parallel calls only the allowed remain.

import assert from 'node:assert/strict';
import { client, main } from './lib.mjs';

const openai = client();
const TOOLS = ['web_search', 'delete_repo'].map((name) => ({
  type: 'function',
  function: { name, parameters: { type: 'object', properties: {} } },
}));

async function ask(script, stream) {
  const body = { model: 'mock-chat', tools: TOOLS, messages: [{ role: 'user', content: script }] };
  let completion;
  const indexes = new Set();
  if (stream) {
    const helper = openai.chat.completions.stream(body);
    helper.on('chunk', (chunk) => {
      for (const choice of chunk.choices) {
        for (const call of choice.delta.tool_calls ?? []) indexes.add(call.index);
      }
    });
    completion = await helper.finalChatCompletion();
  } else {
    completion = await openai.chat.completions.create(body);
  }
  const { message, finish_reason: finish } = completion.choices[0];
  const calls = (message.tool_calls ?? []).map((call) => {
    assert.equal(call.type, 'function');
    assert.ok(call.id, 'every call has an id');
    return [call.function.name, JSON.parse(call.function.arguments)];
  });
  return { calls, finish, content: message.content ?? '', indexes: [...indexes].sort() };
}

main(async () => {
  const out = {};
  for (const stream of [false, true]) {
    const how = stream ? 'stream' : 'whole';
    const allowed = await ask('CALL: web_search {"q": "rust"}', stream);
    assert.deepEqual(allowed.calls, [['web_search', { q: 'rust' }]], how);
    assert.equal(allowed.finish, 'tool_calls', how);

    const denied = await ask('CALL: delete_repo {"name": "prod"}', stream);
    assert.deepEqual(denied.calls, [], `${how}: the denied call is gone`);
    assert.equal(denied.finish, 'stop', `${how}: no finish reason pointing at a removed call`);
    assert.match(denied.content, /delete_repo/, `${how}: the explanation names the tool`);
    assert.doesNotMatch(JSON.stringify(denied), /prod/, `${how}: its arguments never arrive`);

    const parallel = await ask(
      'CALL: delete_repo {"name": "x"}\nCALL: web_search {"q": "ok"}',
      stream,
    );
    assert.deepEqual(parallel.calls, [['web_search', { q: 'ok' }]], how);
    assert.equal(parallel.finish, 'tool_calls', how);
    if (stream) assert.deepEqual(parallel.indexes, [0], 'the remaining call is renumbered');
    out[how] = { allowed, denied, parallel };
  }
  return out;
});
