// The Responses API through tollgate: text whole and streamed (raw events and the SDK's
// stream helper, which rebuilds the response from the events and checks their order), and
// function calls, allowed and denied, whole and streamed.

import assert from 'node:assert/strict';
import { client, main } from './lib.mjs';

const openai = client();
const TOOLS = ['web_search', 'delete_repo'].map((name) => ({
  type: 'function',
  name,
  parameters: { type: 'object', properties: {} },
  strict: false,
}));

// The parts of a finished response the test compares, whole or streamed alike.
function summary(response) {
  assert.equal(response.object, 'response');
  assert.equal(response.status, 'completed');
  return {
    text: response.output_text,
    types: response.output.map((item) => item.type),
    calls: response.output
      .filter((item) => item.type === 'function_call')
      .map((item) => [item.name, JSON.parse(item.arguments)]),
  };
}

async function respond(input, stream, extra = {}) {
  const body = { model: 'mock-chat', input, ...extra };
  if (!stream) return summary(await openai.responses.create(body));
  const helper = openai.responses.stream(body);
  const kinds = new Set();
  helper.on('event', (event) => kinds.add(event.type));
  const final = await helper.finalResponse();
  assert.ok(kinds.has('response.created'), 'the stream starts with response.created');
  assert.ok(kinds.has('response.completed'), 'and ends with response.completed');
  return summary(final);
}

main(async () => {
  let raw = '';
  const events = [];
  for await (const event of await openai.responses.create({
    model: 'mock-chat',
    input: 'SAY: streamed response',
    stream: true,
  })) {
    events.push(event.type);
    if (event.type === 'response.output_text.delta') raw += event.delta;
  }
  assert.equal(raw, 'streamed response');
  assert.equal(events.at(-1), 'response.completed');

  const out = { raw };
  for (const stream of [false, true]) {
    const how = stream ? 'stream' : 'whole';
    const text = await respond('SAY: from responses', stream);
    assert.equal(text.text, 'from responses', how);
    assert.deepEqual(text.types, ['message'], how);

    const allowed = await respond('CALL: web_search {"q": "rust"}', stream, { tools: TOOLS });
    assert.deepEqual(allowed.calls, [['web_search', { q: 'rust' }]], how);

    const denied = await respond('CALL: delete_repo {"name": "prod"}', stream, { tools: TOOLS });
    assert.deepEqual(denied.calls, [], `${how}: the denied call is gone`);
    assert.deepEqual(denied.types, ['message'], `${how}: an explanation took its place`);
    assert.match(denied.text, /delete_repo/, `${how}: the explanation names the tool`);
    assert.doesNotMatch(JSON.stringify(denied), /prod/, `${how}: its arguments never arrive`);
    out[how] = { text, allowed, denied };
  }
  return out;
});
