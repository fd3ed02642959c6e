// Drives a bulkhead server with the official OpenAI Node client through the
// legacy functions API and a model picked from the profile's list, and
// prints one JSON line: {"functions":…,"streamed":…,"pick":…}.
//
// functions: a function_call round trip (the call comes back as
// message.function_call, the "function" message continues the turn);
// streamed: the same call, streamed as a function_call delta; pick: a
// request for "default/offline/alt" (a model the profile lists), the model
// list, and a request for a model it does not list (a 400).
//
// Env: BASE_URL, API_KEY. Run by cmd/bulkhead/openai_sdk_functions_test.go.
import OpenAI from 'openai';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

async function main() {
  const client = new OpenAI({ baseURL: env('BASE_URL'), apiKey: env('API_KEY'), maxRetries: 0, timeout: 20_000 });
  const functions = [{
    name: 'get_weather',
    description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  }];
  const ask = [{ role: 'user', content: '/call get_weather {"city": "Paris"}' }];

  const call = await client.chat.completions.create({ model: 'default', messages: ask, functions, function_call: 'auto' });
  const fc = call.choices[0].message.function_call;
  const result = await client.chat.completions.create({
    model: 'default',
    functions,
    messages: [...ask, { role: 'assistant', content: null, function_call: fc }, { role: 'function', name: fc.name, content: 'sunny, 21 C' }],
  });
  const fns = {
    finishReason: call.choices[0].finish_reason,
    name: fc?.name ?? null,
    arguments: fc?.arguments ?? null,
    toolCalls: call.choices[0].message.tool_calls?.length ?? 0,
    followUp: result.choices[0].message.content,
    followUpFinishReason: result.choices[0].finish_reason,
  };

  const streamed = { name: '', arguments: '', finishReason: null };
  for await (const chunk of await client.chat.completions.create({ model: 'default', messages: ask, functions, stream: true })) {
    for (const choice of chunk.choices ?? []) {
      if (choice.delta?.function_call?.name) streamed.name += choice.delta.function_call.name;
      if (choice.delta?.function_call?.arguments) streamed.arguments += choice.delta.function_call.arguments;
      if (choice.finish_reason) streamed.finishReason = choice.finish_reason;
    }
  }

  const picked = await client.chat.completions.create({ model: 'default/offline/alt', messages: [{ role: 'user', content: 'hi' }] });
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  const one = await client.models.retrieve('default/offline/alt');
  let refused = null;
  try {
    await client.chat.completions.create({ model: 'default/offline/unlisted', messages: [{ role: 'user', content: 'hi' }] });
    throw new Error('a model the profile does not list was accepted');
  } catch (err) {
    if (!(err instanceof OpenAI.BadRequestError)) throw err;
    refused = { status: err.status, message: err.message };
  }
  const pick = { model: picked.model, upstreamModel: picked.upstream_model ?? null, models, retrieved: one.id, refused };

  process.stdout.write(JSON.stringify({ functions: fns, streamed, pick }) + '\n');
}

main().catch((err) => {
  const status = err?.status ? ` (status ${err.status})` : '';
  process.stderr.write(`functions.mjs: ${err?.stack ?? err}${status}\n`);
  process.exit(1);
});
