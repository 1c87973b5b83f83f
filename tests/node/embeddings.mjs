// Embeddings through tollgate. The SDK asks for base64 unless told otherwise and decodes
// the vectors itself, so both encodings must arrive intact and agree.

import assert from 'node:assert/strict';
import { client, main } from './lib.mjs';

const openai = client();

main(async () => {
  const input = ['one', 'two'];
  const decoded = await openai.embeddings.create({ model: 'mock-embed', input });
  const floats = await openai.embeddings.create({
    model: 'mock-embed',
    input,
    encoding_format: 'float',
  });
  assert.equal(decoded.data.length, 2);
  assert.deepEqual(
    decoded.data.map((d) => d.index),
    [0, 1],
  );
  for (const [i, item] of decoded.data.entries()) {
    assert.ok(Array.isArray(item.embedding), 'the SDK decoded base64 into numbers');
    // Both carry the same float32 values: base64 as bytes, float as their exact decimal.
    assert.deepEqual(item.embedding, floats.data[i].embedding, `input ${i}`);
  }
  assert.notDeepEqual(decoded.data[0].embedding, decoded.data[1].embedding);
  assert.ok(decoded.usage.prompt_tokens > 0);
  return {
    count: decoded.data.length,
    dimensions: decoded.data[0].embedding.length,
    prompt_tokens: decoded.usage.prompt_tokens,
  };
});
