// Drives a bulkhead server with the OpenAI Agents SDK in its default mode
// (the Responses API) and prints one JSON line: {"tool":…,"handoff":…,"stream":…,
// "instructions":…,"structured":…,"continued":…}.
//
// tool: an agent with one function tool the SDK runs, then answers from its
// result; handoff: a triage agent hands off to a second agent, which answers;
// stream: the tool run again with run(…, {stream: true}); instructions:
// whether an agent's instructions reached the model; structured: an
// agent's outputType; continued: previousResponseId by the tenant and by
// another tenant's key.
//
// Env: BASE_URL, API_KEY, OTHER_KEY (another tenant's key). Run by cmd/bulkhead/frameworks_test.go.
import { Agent, OpenAIResponsesModel, handoff, run, setDefaultOpenAIClient, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { Trip, env } from './shared.mjs';

setTracingDisabled(true);
setDefaultOpenAIClient(new OpenAI({ baseURL: env('BASE_URL'), apiKey: env('API_KEY'), maxRetries: 0, timeout: 20_000 }));
const otherClient = new OpenAI({ baseURL: env('BASE_URL'), apiKey: env('OTHER_KEY'), maxRetries: 0, timeout: 20_000 });

const lookups = [];
const lookup = tool({
  name: 'lookup',
  description: 'Look a word up',
  parameters: z.object({ word: z.string() }),
  execute: async ({ word }) => {
    lookups.push(word);
    return `${word} is a purple flower`;
  },
});

const helper = new Agent({ name: 'Helper', model: 'default', instructions: 'You help with lookups.', tools: [lookup] });
const billing = new Agent({ name: 'Billing', model: 'default', instructions: 'You answer billing questions.', handoffDescription: 'Billing questions' });
const toBilling = handoff(billing);
const triage = new Agent({ name: 'Triage', model: 'default', instructions: 'You route questions.', handoffs: [toBilling] });

// calls lists the function calls a run's items made, by name.
const calls = (items) => items.filter((i) => i.type === 'tool_call_item').map((i) => i.rawItem.name);

async function main() {
  const r1 = await run(helper, '/call lookup {"word":"heliotrope"}');
  const toolRun = { output: r1.finalOutput, lastAgent: r1.lastAgent?.name, calls: calls(r1.newItems), lookups: [...lookups] };

  const r2 = await run(triage, `/call ${toBilling.toolName} {}`);
  const handoff = {
    output: r2.finalOutput,
    lastAgent: r2.lastAgent?.name,
    handoffTool: toBilling.toolName,
    items: r2.newItems.map((i) => i.type),
  };

  const r3 = await run(helper, '/call lookup {"word":"lavender"}', { stream: true });
  let events = 0;
  for await (const ev of r3) events++;
  await r3.completed;
  const streamed = { output: r3.finalOutput, events, lookups: [...lookups] };

  // The agent's instructions reach the model (the scripted model's /echo
  // prints its whole context).
  const r4 = await run(billing, '/echo');
  const instructions = { sawInstructions: r4.finalOutput.includes('You answer billing questions.') };

  // outputType: the final output is parsed into the schema (text.format).
  const r5 = await run(new Agent({ name: 'Planner', model: 'default', outputType: Trip }),
    '/say {"city":"Oslo","days":4}');
  const structured = r5.finalOutput;

  // previousResponseId: the tenant continues its own response; another
  // tenant's key, naming the same id, gets a 404.
  const memo = new Agent({ name: 'Memo', model: 'default' });
  const first = await run(memo, 'remember the word tangerine');
  const own = await run(memo, '/echo', { previousResponseId: first.lastResponseId });
  let foreign = 200;
  try {
    await run(new Agent({ name: 'Memo', model: new OpenAIResponsesModel(otherClient, 'default') }), '/echo', { previousResponseId: first.lastResponseId });
  } catch (err) {
    foreign = err?.status ?? err?.cause?.status ?? `unexpected: ${err}`;
  }
  const continued = { id: first.lastResponseId, sawFirst: own.finalOutput.includes('tangerine'), foreign };

  process.stdout.write(JSON.stringify({ tool: toolRun, handoff, stream: streamed, instructions, structured, continued }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`agents.mjs: ${err?.stack ?? err}\n${JSON.stringify(err?.error ?? '')}\n`);
  process.exit(1);
});
