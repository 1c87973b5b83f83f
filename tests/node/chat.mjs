// Chat completions through tollgate: a whole answer, a raw stream with and without the
// usage chunk, the SDK's stream helper, and the models list.

import assert from 'node:assert/strict';
import { client, drainChat, main } from './lib.mjs';

const openai = client();
const ask = (content) => [{ role: 'user', content }];

main(async () => {
  const { data: whole, response } = await openai.chat.completions
    .create({ model: 'mock-chat', messages: ask('SAY: hi there') })
    .withResponse();
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices[0].message.content, 'hi there');
  assert.equal(whole.choices[0].finish_reason, 'stop');
  assert.ok(whole.usage.completion_tokens > 0, 'a whole answer carries usage');
  assert.equal(response.headers.get('x-tollgate-decision'), 'allow');
  assert.match(response.headers.get('x-tollgate-cost-usd') ?? '', /^\d+(\.\d+)?$/);

  // tollgate asks the provider for usage on every stream and removes the usage chunk
  // again unless the client asked for it itself.
  const plain = await drainChat(
    await openai.chat.completions.create({
      model: 'mock-chat',
      stream: true,
      messages: ask('SAY: streamed words'),
    }),
  );
  assert.equal(plain.text, 'streamed words');
  assert.equal(plain.usage, null, 'no usage chunk the client did not ask for');
  assert.deepEqual(plain.finish, ['stop']);

  const counted = await drainChat(
    await openai.chat.completions.create({
      model: 'mock-chat',
      stream: true,
      stream_options: { include_usage: true },
      messages: ask('SAY: counted words'),
    }),
  );
  assert.equal(counted.text, 'counted words');
  assert.ok(counted.usage?.completion_tokens > 0, 'the usage chunk the client asked for');

  // The helper accumulates the stream into a completion, as agents built on it do.
  const helper = openai.chat.completions.stream({
    model: 'mock-chat',
    messages: ask('SAY: from the helper'),
  });
  let deltas = 0;
  helper.on('content.delta', () => (deltas += 1));
  const final = await helper.finalChatCompletion();
  assert.equal(final.choices[0].message.content, 'from the helper');
  assert.ok(deltas > 1, `the answer came in pieces (${deltas})`);

  const models = [];
  for await (const model of openai.models.list()) models.push(model.id);

  return {
    chat: whole.choices[0].message.content,
    stream: plain.text,
    stream_usage: counted.usage.completion_tokens,
    helper: final.choices[0].message.content,
    models: models.sort(),
  };
});
