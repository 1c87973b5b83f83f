// tollgate's refusals as the SDK's error classes, and how often the SDK sends each request.
//
// Every client here keeps the SDK's own retry policy (2 retries by default), so a refusal
// that lacked `x-should-retry: false` on a 429 would be sent three times: a budget denial
// must reach tollgate exactly once. The counts come from the SDK's own fetch calls; a
// provider failure (a 5xx, which the SDK does retry) shows that the count sees retries.

import assert from 'node:assert/strict';
import {
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  PermissionDeniedError,
  RateLimitError,
} from 'openai';
import { OpenAI, client, keyFrom, main, rejects } from './lib.mjs';

// A client with the SDK's retry policy whose HTTP requests are counted.
function counted(options = {}) {
  const seen = { requests: 0 };
  const openai = new OpenAI({
    timeout: 60_000,
    ...options,
    fetch: (url, init) => {
      seen.requests += 1;
      return fetch(url, init);
    },
  });
  return { openai, seen };
}

// Sends one request; it must fail with `ErrorClass` after `attempts` HTTP requests.
async function refused(options, send, ErrorClass, attempts = 1) {
  const { openai, seen } = counted(options);
  const err = await rejects(send(openai), ErrorClass);
  assert.equal(seen.requests, attempts, `${ErrorClass.name} after ${seen.requests} requests`);
  return {
    status: err.status,
    type: err.type,
    code: err.code,
    requests: seen.requests,
    should_retry: err.headers.get('x-should-retry'),
    decision: err.headers.get('x-tollgate-decision'),
    message: err.error?.message,
  };
}

const chat = (content, extra = {}) => (openai) =>
  openai.chat.completions.create({
    model: 'mock-chat',
    messages: [{ role: 'user', content }],
    ...extra,
  });

main(async () => {
  const out = {};
  out.bad_key = await refused(
    { apiKey: 'tg_this_key_was_never_issued_0123456789abcdef' },
    chat('SAY: never'),
    AuthenticationError,
  );
  assert.equal(out.bad_key.status, 401);
  assert.equal(out.bad_key.code, 'invalid_api_key');
  assert.equal(out.bad_key.type, 'authentication_error');

  out.bad_input = await refused(
    {},
    (openai) => openai.chat.completions.create({ model: 'mock-chat', messages: 'not a list' }),
    BadRequestError,
  );
  assert.equal(out.bad_input.status, 400);
  assert.equal(out.bad_input.type, 'invalid_request_error');

  out.provider_bad_input = await refused({}, chat('x', { model: 'mock-error-400' }), BadRequestError);
  assert.equal(out.provider_bad_input.status, 400);

  out.not_allowed = await refused({}, chat('x', { model: 'gpt-4o' }), PermissionDeniedError);
  assert.equal(out.not_allowed.code, 'model_not_allowed');

  // The budget of the `poor` agent affords nothing: every endpoint, streamed or not, is
  // refused once, with no retry.
  const poor = { apiKey: keyFrom('TOLLGATE_POOR_KEY') };
  const budget = {
    chat: chat('SAY: too expensive'),
    chat_stream: chat('SAY: too expensive', { stream: true }),
    responses: (openai) => openai.responses.create({ model: 'mock-chat', input: 'SAY: too expensive' }),
    embeddings: (openai) => openai.embeddings.create({ model: 'mock-embed', input: 'too expensive' }),
  };
  out.budget = {};
  for (const [name, send] of Object.entries(budget)) {
    const r = await refused(poor, send, RateLimitError);
    assert.equal(r.status, 429, name);
    assert.equal(r.type, 'insufficient_quota', name);
    assert.equal(r.code, 'budget_exceeded', name);
    assert.equal(r.should_retry, 'false', name);
    assert.equal(r.decision, 'deny', name);
    out.budget[name] = r;
  }

  // A stream the provider cuts after it started ends with tollgate's error event, which the
  // SDK raises while the agent iterates.
  const cut = await client().chat.completions.create({
    model: 'mock-cut-stream',
    stream: true,
    messages: [{ role: 'user', content: 'WORDS: 50' }],
  });
  let before = '';
  const broken = await rejects(
    (async () => {
      for await (const chunk of cut) before += chunk.choices[0]?.delta?.content ?? '';
    })(),
    APIError,
  );
  out.cut_stream = { type: broken.type, code: broken.code, text_before: before.length > 0 };
  assert.ok(broken.code, 'the error event carries a code');

  // The control: a provider failure is retried by the SDK, and the count shows it.
  out.provider_failure = await refused(
    { maxRetries: 1 },
    chat('x', { model: 'mock-error-500' }),
    InternalServerError,
    2,
  );
  return out;
});
