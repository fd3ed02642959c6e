// Drives a bulkhead server whose tenant's model is a fake upstream that
// records what it receives, with the Vercel AI SDK, LangChain.js and the
// OpenAI Agents SDK, each asked for the request fields it knows how to
// send. Every request the
// frameworks make goes through a fetch that records its body, and the
// script prints one JSON line: {"sent":[{"path","body"}…],"results":{…}}.
// The Go test (cmd/bulkhead/frameworks_fields_test.go) checks that each
// field of each body reached the upstream as the framework sent it.
//
// Every prompt starts with "fields:" and names its case; the fake upstream
// files what it receives under the first user message.
//
// Env: BASE_URL, API_KEY.
import { createOpenAI } from '@ai-sdk/openai';
import { Agent, run, setDefaultOpenAIClient, setTracingDisabled, tool as agentTool } from '@openai/agents';
import OpenAI from 'openai';
import { HumanMessage, ToolMessage } from '@langchain/core/messages';
import { tool as lcTool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import { Trip, env, weather } from './shared.mjs';

const sent = [];
async function recordingFetch(input, init) {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  if (init?.body) sent.push({ path: url.pathname, body: JSON.parse(init.body) });
  return fetch(input, init);
}

const baseURL = env('BASE_URL');
const apiKey = env('API_KEY');

async function aiSDK() {
  const openai = createOpenAI({ baseURL, apiKey, fetch: recordingFetch });
  const tools = { get_weather: tool({ description: weather.description, inputSchema: weather.schema, execute: weather.run }) };
  const sampling = {
    temperature: 0.3, topP: 0.9, frequencyPenalty: 0.25, presencePenalty: 0.5,
    seed: 4242, stopSequences: ['END'], maxOutputTokens: 321, maxRetries: 0,
  };
  // The tool is required in the first step only: the second answers from
  // its result (and sends tool_choice "none").
  const prepareStep = ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: 'none' } : {});
  const chat = await generateText({
    model: openai.chat('default'), prompt: 'fields: ai-sdk chat tools', tools, toolChoice: 'required',
    stopWhen: stepCountIs(2), prepareStep, ...sampling,
    providerOptions: { openai: { parallelToolCalls: false, logitBias: { 50256: -100 }, user: 'alice' } },
  });
  const streamed = streamText({
    model: openai.chat('default'), prompt: 'fields: ai-sdk chat stream', tools, toolChoice: { type: 'tool', toolName: 'get_weather' },
    stopWhen: stepCountIs(2), prepareStep, ...sampling,
  });
  await streamed.consumeStream();
  const object = await generateObject({
    model: openai.chat('default'), schema: Trip, schemaName: 'trip', prompt: 'fields: ai-sdk chat object', seed: 7, maxRetries: 0,
    providerOptions: { openai: { maxCompletionTokens: 123, metadata: { case: 'object' }, store: false } },
  });
  const responses = await generateText({
    model: openai('default'), prompt: 'fields: ai-sdk responses tools', tools, toolChoice: 'required',
    stopWhen: stepCountIs(2), prepareStep, temperature: 0.3, topP: 0.9, maxOutputTokens: 321, maxRetries: 0,
  });
  const responsesObject = await generateObject({
    model: openai('default'), schema: Trip, schemaName: 'trip', prompt: 'fields: ai-sdk responses object', maxRetries: 0,
  });
  return {
    chat: { steps: chat.steps.length, text: chat.text },
    stream: { steps: (await streamed.steps).length, text: await streamed.text },
    object: object.object,
    responses: { steps: responses.steps.length, text: responses.text },
    responsesObject: responsesObject.object,
  };
}

async function langChain() {
  const configuration = { baseURL, fetch: recordingFetch };
  const model = new ChatOpenAI({
    model: 'default', apiKey, configuration, maxRetries: 0,
    temperature: 0.3, topP: 0.9, frequencyPenalty: 0.25, presencePenalty: 0.5, maxTokens: 321,
    stop: ['END'], logitBias: { 50256: -100 }, modelKwargs: { seed: 4242 },
  });
  const invoke = await model.invoke('fields: langchain invoke');
  const weatherTool = lcTool(weather.run, { name: weather.name, description: weather.description, schema: weather.schema });
  const bound = model.bindTools([weatherTool], { tool_choice: 'required', parallel_tool_calls: false });
  const ask = new HumanMessage('fields: langchain tools');
  const ai = await bound.invoke([ask]);
  const call = ai.tool_calls[0];
  const after = await bound.invoke([ask, ai, new ToolMessage({ content: await weatherTool.invoke(call.args), tool_call_id: call.id })]);
  const structured = await model.withStructuredOutput(Trip, { name: 'trip', method: 'jsonSchema', strict: true })
    .invoke('fields: langchain structured');
  let streamed = '';
  for await (const c of await model.stream('fields: langchain stream')) streamed += c.content;
  return { invoke: invoke.content, tools: { name: call.name, args: call.args, answer: after.content }, structured, stream: streamed };
}

async function agents() {
  setTracingDisabled(true);
  setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20_000, fetch: recordingFetch }));
  const weatherTool = agentTool({ name: weather.name, description: weather.description, parameters: weather.schema, execute: weather.run });
  const agent = new Agent({
    name: 'Weather', model: 'default', instructions: 'You report the weather.', tools: [weatherTool],
    modelSettings: { temperature: 0.3, topP: 0.9, maxTokens: 321, toolChoice: 'required', parallelToolCalls: false },
  });
  const r = await run(agent, 'fields: agents tools');
  return { output: r.finalOutput };
}

async function main() {
  const results = { aiSDK: await aiSDK(), langChain: await langChain(), agents: await agents() };
  process.stdout.write(JSON.stringify({ sent, results }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`fields.mjs: ${err?.stack ?? err}\n${err?.responseBody ?? ''}\n`);
  process.exit(1);
});
