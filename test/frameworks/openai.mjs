// Drives a bulkhead server with the official openai client's zod helpers
// (the part of its surface test/openai-sdk does not cover) and prints one
// JSON line: {"chat":…,"responses":…,"tool":…}.
//
// chat: chat.completions.parse with zodResponseFormat; responses:
// responses.parse with zodTextFormat; tool: a zodFunction tool whose call
// comes back parsed.
//
// Env: BASE_URL, API_KEY. Run by cmd/bulkhead/frameworks_test.go.
import OpenAI from 'openai';
import { zodFunction, zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { Trip, env } from './shared.mjs';


async function main() {
  const client = new OpenAI({ baseURL: env('BASE_URL'), apiKey: env('API_KEY'), maxRetries: 0, timeout: 20_000 });

  const c = await client.chat.completions.parse({
    model: 'default',
    messages: [{ role: 'user', content: '/say {"city":"Paris","days":3}' }],
    response_format: zodResponseFormat(Trip, 'trip'),
  });
  const chat = { parsed: c.choices[0].message.parsed, refusal: c.choices[0].message.refusal ?? null };

  const r = await client.responses.parse({
    model: 'default',
    input: '/say {"city":"Rome","days":2}',
    text: { format: zodTextFormat(Trip, 'trip') },
  });
  const responses = { parsed: r.output_parsed };

  const t = await client.chat.completions.parse({
    model: 'default',
    messages: [{ role: 'user', content: '/call plan_trip {"city":"Oslo","days":4}' }],
    tools: [zodFunction({ name: 'plan_trip', parameters: Trip })],
  });
  const call = t.choices[0].message.tool_calls?.[0];
  const tool = { name: call?.function?.name, parsed: call?.function?.parsed_arguments, finishReason: t.choices[0].finish_reason };

  process.stdout.write(JSON.stringify({ chat, responses, tool }) + '\n');
}

main().catch((err) => {
  const status = err?.status ? ` (status ${err.status})` : '';
  process.stderr.write(`openai.mjs: ${err?.stack ?? err}${status}\n`);
  process.exit(1);
});
