// Drives a bulkhead server with LangChain.js (@langchain/openai) and prints
// one JSON line: {"invoke":…,"stream":…,"tools":…,"structured":…,
// "responses":…,"embeddings":…}.
//
// invoke/stream: ChatOpenAI.invoke and .stream; tools: bindTools, the tool
// call, then a ToolMessage continuing the turn; structured:
// withStructuredOutput of a zod schema (json_schema response_format);
// responses: ChatOpenAI with useResponsesApi; embeddings: OpenAIEmbeddings
// embedQuery and embedDocuments.
//
// Env: BASE_URL, API_KEY. Run by cmd/bulkhead/frameworks_test.go.
import { HumanMessage, ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { Trip, env, weather } from './shared.mjs';

const configuration = { baseURL: env('BASE_URL') };
const apiKey = env('API_KEY');
const chat = (extra = {}) => new ChatOpenAI({ model: 'default', apiKey, configuration, maxRetries: 0, ...extra });

const weatherTool = tool(weather.run, { name: weather.name, description: weather.description, schema: weather.schema });

// text joins a message's content, a string or (from the Responses API) parts.
const text = (m) => (typeof m.content === 'string' ? m.content : m.content.map((p) => p.text ?? '').join(''));

async function toolRound(model) {
  const bound = model.bindTools([weatherTool]);
  const ask = new HumanMessage('/call get_weather {"city":"Paris"}');
  const ai = await bound.invoke([ask]);
  const call = ai.tool_calls?.[0];
  const out = await weatherTool.invoke(call.args);
  const after = await bound.invoke([ask, ai, new ToolMessage({ content: out, tool_call_id: call.id })]);
  return { name: call?.name, args: call?.args, id: call?.id, answer: text(after) };
}

async function main() {
  const model = chat();
  const inv = await model.invoke('hello from langchain');
  const invoke = { content: inv.content, tokens: inv.usage_metadata?.total_tokens ?? 0 };

  let chunks = 0;
  let content = '';
  for await (const c of await chat({ streamUsage: true }).stream('hello from langchain')) {
    chunks++;
    content += c.content;
  }
  const stream = { chunks, content };

  const tools = await toolRound(model);

  const structured = await model.withStructuredOutput(Trip, { name: 'trip' }).invoke('/say {"city":"Paris","days":3}');

  const rmodel = chat({ useResponsesApi: true });
  const rinv = await rmodel.invoke('hello from langchain');
  const responses = {
    content: text(rinv),
    tools: await toolRound(rmodel),
    structured: await rmodel.withStructuredOutput(Trip, { name: 'trip' }).invoke('/say {"city":"Rome","days":2}'),
  };

  const emb = new OpenAIEmbeddings({ model: 'default', apiKey, configuration, maxRetries: 0 });
  const q = await emb.embedQuery('the tenant handbook');
  const docs = await emb.embedDocuments(['a', 'b', 'a']);
  const same = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);
  const embeddings = { dim: q.length, count: docs.length, repeatEqual: same(docs[0], docs[2]), distinct: !same(docs[0], docs[1]) };

  process.stdout.write(JSON.stringify({ invoke, stream, tools, structured, responses, embeddings }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`langchain.mjs: ${err?.stack ?? err}\n`);
  process.exit(1);
});
