// Drives a bulkhead server with the official OpenAI Node client and prints
// one JSON line: {"nonStream":…,"stream":…,"models":[…],"authStatus":N,"clientTools":…}.
//
// Env: BASE_URL (e.g. http://127.0.0.1:8080/v1) and API_KEY (a tenant key).
// Exits non-zero on any unexpected error. Run by cmd/bulkhead/openai_sdk_test.go.
import OpenAI from 'openai';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

async function main() {
  const baseURL = env('BASE_URL');
  const apiKey = env('API_KEY');
  // No retries: a failing request should fail the test at once.
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20_000 });
  const messages = [{ role: 'user', content: 'hello from the sdk' }];

  // (a) Non-streaming.
  const full = await client.chat.completions.create({ model: 'default', user: 'alice', messages });
  const nonStream = {
    id: full.id,
    object: full.object,
    model: full.model,
    content: full.choices?.[0]?.message?.content ?? null,
    role: full.choices?.[0]?.message?.role ?? null,
    finishReason: full.choices?.[0]?.finish_reason ?? null,
    usage: full.usage ?? null,
  };

  // (b) Streaming, with usage in the last chunk.
  const stream = await client.chat.completions.create({
    model: 'default',
    user: 'alice',
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  const deltas = [];
  let finishReason = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    for (const choice of chunk.choices ?? []) {
      if (choice.delta?.content) deltas.push(choice.delta.content);
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  const streamed = { chunks, deltas: deltas.length, content: deltas.join(''), finishReason, usage };

  // (c) Models.
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);

  // (d) A bad key must be an AuthenticationError (401).
  const bad = new OpenAI({ baseURL, apiKey: 'bk_0000000000000000_notarealkeynotarealkeynotarealkey', maxRetries: 0, timeout: 20_000 });
  let authStatus = null;
  try {
    await bad.chat.completions.create({ model: 'default', messages });
    throw new Error('request with a bad key succeeded');
  } catch (err) {
    if (!(err instanceof OpenAI.AuthenticationError)) throw err;
    authStatus = err.status;
  }

  // (e) A client tool round trip, plain and streamed: the call comes back
  // for the client to run, and the result continues the turn.
  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  }];
  const ask = [{ role: 'user', content: '/call get_weather {"city": "Paris"}' }];
  const call = await client.chat.completions.create({ model: 'default', messages: ask, tools, tool_choice: 'auto' });
  const msg = call.choices[0].message;
  const tc = msg.tool_calls?.[0];
  const result = await client.chat.completions.create({
    model: 'default',
    tools,
    messages: [...ask, msg, { role: 'tool', tool_call_id: tc.id, content: 'sunny, 21 C' }],
  });
  const calls = {};
  let streamFinish = null;
  for await (const chunk of await client.chat.completions.create({ model: 'default', messages: ask, tools, stream: true })) {
    for (const choice of chunk.choices ?? []) {
      for (const d of choice.delta?.tool_calls ?? []) {
        const c = (calls[d.index] ??= { id: '', name: '', arguments: '' });
        if (d.id) c.id = d.id;
        if (d.function?.name) c.name += d.function.name;
        if (d.function?.arguments) c.arguments += d.function.arguments;
      }
      if (choice.finish_reason) streamFinish = choice.finish_reason;
    }
  }
  const clientTools = {
    finishReason: call.choices[0].finish_reason,
    name: tc?.function?.name ?? null,
    arguments: tc?.function?.arguments ?? null,
    id: tc?.id ?? null,
    followUp: result.choices[0].message.content,
    followUpFinishReason: result.choices[0].finish_reason,
    streamFinishReason: streamFinish,
    streamCalls: Object.values(calls),
  };

  process.stdout.write(JSON.stringify({ nonStream, stream: streamed, models, authStatus, clientTools }) + '\n');
}

main().catch((err) => {
  const status = err?.status ? ` (status ${err.status})` : '';
  process.stderr.write(`sdk.mjs: ${err?.stack ?? err}${status}\n`);
  process.exit(1);
});
