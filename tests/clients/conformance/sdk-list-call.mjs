// The official TypeScript SDK client against a dataplane endpoint with a bearer token:
// connect (initialize), list tools, call one. Prints one JSON line with what it saw.
//   node sdk-list-call.mjs URL TOKEN TOOL
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token, tool] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: 'gatehouse-sdk-test', version: '1.0.0' });
await client.connect(transport);
const tools = await client.listTools();
const result = await client.callTool({ name: tool, arguments: {} });
console.log(JSON.stringify({
  protocolVersion: transport.protocolVersion ?? null,
  sessionId: transport.sessionId ?? null,
  tools: tools.tools.map((t) => t.name),
  result,
}));
await transport.terminateSession().catch(() => {});
await client.close();
