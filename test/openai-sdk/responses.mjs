// Drives a bulkhead server's Responses API with the official OpenAI Node
// client and prints one JSON line: {"plain":…,"continued":…,"stream":…,
// "tools":…,"structured":…,"retrieved":…,"deleted":…,"foreign":…}.
//
// plain: responses.create and output_text; continued: a second response
// with previous_response_id, whose model echoes its context; stream: the
// event types and the joined text deltas of responses.create({stream});
// tools: a client function tool round trip; structured: text.format
// json_schema, the output parsed; retrieved/deleted: GET and DELETE;
// foreign: the status another tenant's key gets for the response.
//
// Env: BASE_URL, API_KEY (a tenant key), OTHER_KEY (another tenant's key).
// Run by cmd/bulkhead/openai_sdk_responses_test.go.
import OpenAI from 'openai';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

async function status(f) {
  try {
    await f();
  } catch (err) {
    if (err instanceof OpenAI.APIError && err.status) return err.status;
    throw err;
  }
  return 200;
}

async function main() {
  const baseURL = env('BASE_URL');
  const client = new OpenAI({ baseURL, apiKey: env('API_KEY'), maxRetries: 0, timeout: 20_000 });
  const other = new OpenAI({ baseURL, apiKey: env('OTHER_KEY'), maxRetries: 0, timeout: 20_000 });
  const user = 'alice';
  const q = { query: { user } };

  const first = await client.responses.create({ model: 'default', user, input: 'remember the word heliotrope' });
  const plain = { id: first.id, object: first.object, status: first.status, text: first.output_text, usage: first.usage };

  const second = await client.responses.create({ model: 'default', user, input: '/echo', previous_response_id: first.id });
  const continued = { previous: second.previous_response_id, sawFirst: second.output_text.includes('heliotrope') };

  const stream = await client.responses.create({ model: 'default', user, input: 'stream me', stream: true });
  const types = [];
  let deltas = '';
  let completed = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.output_text.delta') deltas += ev.delta;
    if (ev.type === 'response.completed') completed = ev.response;
  }
  const streamed = { types, deltas, completedText: completed?.output_text ?? completed?.output?.[0]?.content?.[0]?.text ?? null };

  const tools = [{ type: 'function', name: 'lookup', description: 'Look a word up', strict: false,
    parameters: { type: 'object', properties: { word: { type: 'string' } }, required: ['word'] } }];
  const call = await client.responses.create({ model: 'default', user, tools, input: '/call lookup {"word":"heliotrope"}' });
  const fc = call.output.find((o) => o.type === 'function_call');
  const after = await client.responses.create({ model: 'default', user, tools, previous_response_id: call.id,
    input: [{ type: 'function_call_output', call_id: fc.call_id, output: 'a purple flower' }] });
  const toolRun = { name: fc?.name, args: fc?.arguments, answer: after.output_text, callID: fc?.call_id };

  const json = await client.responses.create({ model: 'default', user, input: '/say {"colour":"purple"}',
    text: { format: { type: 'json_schema', name: 'colour', strict: true,
      schema: { type: 'object', properties: { colour: { type: 'string' } }, required: ['colour'], additionalProperties: false } } } });
  const structured = JSON.parse(json.output_text);

  const got = await client.responses.retrieve(first.id, {}, q);
  const foreign = await status(() => other.responses.retrieve(first.id, {}, q));
  await client.responses.delete(first.id, q);
  const afterDelete = await status(() => client.responses.retrieve(first.id, {}, q));

  console.log(JSON.stringify({ plain, continued, stream: streamed, tools: toolRun, structured,
    retrieved: got.output_text === first.output_text, deleted: afterDelete, foreign }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
