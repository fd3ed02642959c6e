// Drives a bulkhead server's embeddings and model endpoints with the
// official OpenAI Node client and prints one JSON line:
// {"single":…,"batch":…,"model":…,"missing":…,"auth":…}.
//
// single: one text in the SDK's default encoding (it asks for base64 and
// decodes it); batch: three texts as floats, compared with each other and
// with the single one; model: models.retrieve of the tenant's profile;
// missing: the statuses of an unknown model, another tenant's profile and
// dimensions the embedder does not give; auth: the key sent in api-key or
// x-api-key beside Authorization, agreeing and conflicting.
//
// Env: BASE_URL, API_KEY (a tenant key), OTHER_KEY (another tenant's key),
// FOREIGN_MODEL (a profile of that other tenant). Run by
// cmd/bulkhead/openai_sdk_embeddings_test.go.
import OpenAI from 'openai';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// status returns the HTTP status of the error f throws, or throws itself.
async function status(f) {
  try {
    await f();
  } catch (err) {
    if (err instanceof OpenAI.APIError && err.status) return err.status;
    throw err;
  }
  throw new Error('request succeeded, want an error');
}

async function main() {
  const baseURL = env('BASE_URL');
  const apiKey = env('API_KEY');
  const otherKey = env('OTHER_KEY');
  const foreignModel = env('FOREIGN_MODEL');
  const opts = { baseURL, apiKey, maxRetries: 0, timeout: 20_000 };
  const client = new OpenAI(opts);

  const one = await client.embeddings.create({ model: 'default', input: 'refund policy', user: 'alice' });
  const single = {
    object: one.object,
    model: one.model,
    count: one.data.length,
    dim: one.data[0]?.embedding?.length ?? 0,
    index: one.data[0]?.index ?? null,
    promptTokens: one.usage?.prompt_tokens ?? 0,
    totalTokens: one.usage?.total_tokens ?? 0,
  };

  const many = await client.embeddings.create({
    model: 'default',
    input: ['shipping times', 'refund policy', 'shipping times'],
    encoding_format: 'float',
  });
  const v = many.data.map((d) => d.embedding);
  const batch = {
    count: v.length,
    indexes: many.data.map((d) => d.index),
    repeatEqual: same(v[0], v[2]),
    distinct: !same(v[0], v[1]),
    // JSON carries float32s in their shortest decimal form: round them
    // back to float32 before comparing with the decoded base64.
    base64MatchesFloat: same(v[1].map(Math.fround), Array.from(one.data[0].embedding, Math.fround)),
  };

  const m = await client.models.retrieve('default');
  const model = { id: m.id, object: m.object, ownedBy: m.owned_by };

  const missing = {
    unknownModel: await status(() => client.models.retrieve('no-such-profile')),
    foreignModel: await status(() => client.models.retrieve(foreignModel)),
    unknownEmbedder: await status(() => client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' })),
    wrongDimensions: await status(() => client.embeddings.create({ model: 'default', input: 'x', dimensions: 7 })),
  };

  const withHeaders = (h) => new OpenAI({ ...opts, defaultHeaders: h });
  const auth = {
    apiKeyAgrees: (await withHeaders({ 'api-key': apiKey }).models.retrieve('default')).owned_by,
    xApiKeyAgrees: (await withHeaders({ 'x-api-key': apiKey }).models.retrieve('default')).owned_by,
    conflicting: await status(() => withHeaders({ 'x-api-key': otherKey }).models.retrieve('default')),
  };

  process.stdout.write(JSON.stringify({ single, batch, model, missing, auth }) + '\n');
}

main().catch((err) => {
  const st = err?.status ? ` (status ${err.status})` : '';
  process.stderr.write(`embeddings.mjs: ${err?.stack ?? err}${st}\n`);
  process.exit(1);
});
