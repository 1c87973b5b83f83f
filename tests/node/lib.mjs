// What every script shares: a client pointed at tollgate (OPENAI_BASE_URL and
// OPENAI_API_KEY come from the Rust test), and the one JSON line a script prints for the
// Rust test to check. A failed assertion exits non-zero with its stack on stderr.

import OpenAI from 'openai';

export { OpenAI };

// No retries unless a script asks for them: a retried request would hide a failure and
// make counts wrong. The timeout only keeps a broken run from hanging the suite.
export function client(options = {}) {
  return new OpenAI({ maxRetries: 0, timeout: 60_000, ...options });
}

// A key other than OPENAI_API_KEY, handed over by the Rust test in `name`.
export function keyFrom(name) {
  const key = process.env[name];
  if (!key) throw new Error(`${name} is not set`);
  return key;
}

// Runs `body` and prints what it returns as one JSON line; any throw fails the process.
export async function main(body) {
  try {
    const out = await body();
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } catch (err) {
    process.stderr.write(`${err?.stack ?? err}\n`);
    if (err?.error) process.stderr.write(`error body: ${JSON.stringify(err.error)}\n`);
    process.exitCode = 1;
  }
}

// Awaits `promise`, which must reject with an instance of `ErrorClass`; returns the error.
export async function rejects(promise, ErrorClass) {
  try {
    const value = await promise;
    throw new Error(`expected ${ErrorClass.name}, got a result: ${JSON.stringify(value)}`);
  } catch (err) {
    if (!(err instanceof ErrorClass)) {
      throw new Error(`expected ${ErrorClass.name}, got ${err?.constructor?.name}: ${err?.message}`, {
        cause: err,
      });
    }
    return err;
  }
}

// Collects the text deltas of a raw chat stream, and whether a usage chunk came.
export async function drainChat(stream) {
  let text = '';
  let usage = null;
  const finish = [];
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? '';
      if (choice.finish_reason) finish.push(choice.finish_reason);
    }
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, usage, finish };
}
