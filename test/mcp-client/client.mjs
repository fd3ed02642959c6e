// Drives bulkhead's /mcp with the official MCP TypeScript SDK client and
// prints one JSON line of what it saw (cmd/bulkhead/mcp_sdk_test.go
// asserts on it). Env: MCP_URL, API_KEY, HTTP_TOOL, HTTP_ARGS (JSON),
// MCP_TOOL, MCP_ARGS (JSON), OTHER_TOOL, RESOURCE_URI.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const env = process.env;
const transport = new StreamableHTTPClientTransport(new URL(env.MCP_URL), {
  requestInit: { headers: { Authorization: `Bearer ${env.API_KEY}` } },
});
const client = new Client({ name: "bulkhead-ts-test", version: "1.0.0" });
await client.connect(transport);

const text = (res) => ({
  isError: Boolean(res.isError),
  text: res.content.filter((c) => c.type === "text").map((c) => c.text).join(""),
});

const out = {};
out.sessionId = transport.sessionId ?? "";
out.tools = (await client.listTools()).tools.map((t) => ({ name: t.name, schema: t.inputSchema }));
out.http = text(await client.callTool({ name: env.HTTP_TOOL, arguments: JSON.parse(env.HTTP_ARGS) }));
out.mcp = text(await client.callTool({ name: env.MCP_TOOL, arguments: JSON.parse(env.MCP_ARGS) }));
out.other = text(await client.callTool({ name: env.OTHER_TOOL, arguments: {} }));
out.resources = (await client.listResources()).resources.map((r) => r.uri);
const read = await client.readResource({ uri: env.RESOURCE_URI });
out.resource = read.contents.map((c) => c.text).join("");
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(out));
