// Drives a bulkhead server with the Vercel AI SDK and prints one JSON line:
// {"chatText":…,"chatStream":…,"object":…,"responsesObject":…,"embed":…,
// "responses":…,"responsesStream":…,"parallel":…,"continued":…,"refused":…}.
//
// chatText/chatStream: generateText and streamText over /v1/chat/completions
// (openai.chat) with one tool the SDK runs itself, two steps; object:
// generateObject with a zod schema (responsesObject: the same through
// openai()); embed: embed and embedMany; responses and responsesStream: the
// tool loop with the default openai() provider, which speaks /v1/responses;
// parallel: two tool calls in one step; continued: a response continuing the
// first one's (providerOptions.openai.previousResponseId), by its tenant and
// by another tenant's key; refused: a request with a field Bulkhead does
// not forward (prompt_cache_key: Bulkhead sets its own, per tenant).
//
// Env: BASE_URL, API_KEY, OTHER_KEY (another tenant's key).
// Run by cmd/bulkhead/frameworks_test.go.
import { createOpenAI } from '@ai-sdk/openai';
import { embed, embedMany, generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';
import { Trip, env, weather } from './shared.mjs';

const openai = createOpenAI({ baseURL: env('BASE_URL'), apiKey: env('API_KEY') });
const other = createOpenAI({ baseURL: env('BASE_URL'), apiKey: env('OTHER_KEY') });
const tools = { get_weather: tool({ description: weather.description, inputSchema: weather.schema, execute: weather.run }) };
const clock = {
  get_time: tool({
    description: 'Time in a zone',
    inputSchema: z.object({ zone: z.string() }),
    execute: async ({ zone }) => `noon ${zone}`,
  }),
};
const prompt = '/call get_weather {"city":"Paris"}';
const settings = { tools, stopWhen: stepCountIs(3), maxRetries: 0 };

// summary reduces a finished generation to what the Go test checks.
function summary(steps, text, finishReason) {
  const calls = steps.flatMap((s) => s.toolCalls.map((c) => ({ name: c.toolName, input: c.input })));
  const results = steps.flatMap((s) => s.toolResults.map((r) => ({ name: r.toolName, output: r.output })));
  return { steps: steps.length, calls, results, text, finishReason };
}

async function generate(model) {
  const r = await generateText({ model, prompt, ...settings });
  return { ...summary(r.steps, r.text, r.finishReason), responseId: r.providerMetadata?.openai?.responseId ?? null };
}

// continueFrom asks model to continue the response id and returns the
// status (200, or the API error's) and the answer.
async function continueFrom(model, id) {
  try {
    const r = await generateText({ model, prompt: '/echo', maxRetries: 0, providerOptions: { openai: { previousResponseId: id } } });
    return { status: 200, sawFirst: r.text.includes('get_weather') };
  } catch (err) {
    if (!err?.statusCode) throw err;
    return { status: err.statusCode, sawFirst: false };
  }
}

async function stream(model) {
  const r = streamText({ model, prompt, ...settings, onError: ({ error }) => { throw error; } });
  let deltas = 0;
  for await (const part of r.fullStream) {
    if (part.type === 'text-delta') deltas++;
    if (part.type === 'error') throw part.error;
  }
  const s = summary(await r.steps, await r.text, await r.finishReason);
  return { ...s, deltas, usage: (await r.totalUsage).totalTokens ?? 0 };
}

async function main() {
  const chatText = await generate(openai.chat('default'));
  const chatStream = await stream(openai.chat('default'));

  const obj = await generateObject({
    model: openai.chat('default'),
    schema: Trip,
    prompt: '/say {"city":"Paris","days":3}',
    maxRetries: 0,
  });
  const responsesObj = await generateObject({
    model: openai('default'),
    schema: Trip,
    prompt: '/say {"city":"Rome","days":2}',
    maxRetries: 0,
  });

  const one = await embed({ model: openai.embedding('default'), value: 'the tenant handbook', maxRetries: 0 });
  const many = await embedMany({ model: openai.embedding('default'), values: ['a', 'b', 'a'], maxRetries: 0 });
  const same = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);
  const embedded = {
    dim: one.embedding.length,
    count: many.embeddings.length,
    repeatEqual: same(many.embeddings[0], many.embeddings[2]),
    distinct: !same(many.embeddings[0], many.embeddings[1]),
    tokens: one.usage?.tokens ?? 0,
  };

  const responses = await generate(openai('default'));
  const responsesStream = await stream(openai('default'));
  // Two calls in one step, run by the SDK, answered in one follow-up.
  const both = await generateText({
    model: openai('default'), ...settings, tools: { ...tools, ...clock },
    prompt: '/call get_weather {"city":"Paris"}\n/call get_time {"zone":"CET"}',
  });
  const parallel = summary(both.steps, both.text, both.finishReason);
  // A field Bulkhead does not forward is refused by name, not dropped.
  let refused = { status: 200, message: '' };
  try {
    await generateText({ model: openai.chat('default'), prompt: 'hi', maxRetries: 0, providerOptions: { openai: { promptCacheKey: 'shared-key' } } });
  } catch (err) {
    if (!err?.statusCode) throw err;
    refused = { status: err.statusCode, message: err.message };
  }
  const continued = {
    own: await continueFrom(openai('default'), responses.responseId),
    foreign: await continueFrom(other('default'), responses.responseId),
  };

  process.stdout.write(JSON.stringify({
    chatText, chatStream, object: obj.object, responsesObject: responsesObj.object, embed: embedded, responses, responsesStream, parallel, continued, refused,
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`aisdk.mjs: ${err?.stack ?? err}\n${err?.responseBody ?? ''}\n`);
  process.exit(1);
});
