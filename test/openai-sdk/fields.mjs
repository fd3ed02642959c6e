// Drives a bulkhead server whose tenant talks to a fake upstream, with the
// official OpenAI Node client, and prints one JSON line:
// {"structured":…,"streamed":…,"limited":…,"failed":…}.
//
// structured: a json_schema response_format and a seed (the Go test checks
// the fake upstream received both as sent); streamed: the same, streamed;
// limited: a request the upstream refuses with 429 (the SDK retries it,
// honouring Retry-After); failed: a request the upstream fails with 503
// (bulkhead retries it; its 502 tells the SDK not to).
//
// Env: BASE_URL, API_KEY. Run by cmd/bulkhead/openai_sdk_fields_test.go.
import OpenAI from 'openai';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const schema = {
  type: 'json_schema',
  json_schema: {
    name: 'city',
    strict: true,
    schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  },
};

async function main() {
  const baseURL = env('BASE_URL');
  const apiKey = env('API_KEY');
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 2, timeout: 20_000 });
  const ask = (content) => [{ role: 'user', content }];

  const { data: full, response } = await client.chat.completions
    .create({ model: 'default', messages: ask('structured'), response_format: schema, seed: 4242 })
    .withResponse();
  const structured = {
    model: full.model,
    content: full.choices?.[0]?.message?.content ?? null,
    systemFingerprint: full.system_fingerprint ?? null,
    upstreamModel: full.upstream_model ?? null,
    upstreamModelHeader: response.headers.get('x-bulkhead-upstream-model'),
    requestId: response.headers.get('x-request-id'),
  };

  const stream = await client.chat.completions.create({
    model: 'default', messages: ask('streamed'), response_format: schema, seed: 4242, stream: true,
  });
  let content = '';
  let systemFingerprint = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices ?? []) content += choice.delta?.content ?? '';
    systemFingerprint = chunk.system_fingerprint ?? systemFingerprint;
  }
  const streamed = { content, systemFingerprint };

  const failure = async (content) => {
    try {
      await client.chat.completions.create({ model: 'default', messages: ask(content) });
      return { status: 200 };
    } catch (err) {
      if (!(err instanceof OpenAI.APIError)) throw err;
      return { status: err.status, retryAfter: err.headers?.get?.('retry-after') ?? null };
    }
  };
  const limited = await failure('limited');
  const failed = await failure('failed');

  process.stdout.write(JSON.stringify({ structured, streamed, limited, failed }) + '\n');
}

main().catch((err) => {
  const status = err?.status ? ` (status ${err.status})` : '';
  process.stderr.write(`fields.mjs: ${err?.stack ?? err}${status}\n`);
  process.exit(1);
});
