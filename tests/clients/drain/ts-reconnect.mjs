// The official TypeScript SDK client, connected the way MCP Inspector, VS Code and Claude Code stay
// connected (a 2025 session with its GET notification stream open), while the replica it talks to
// drains. Reads a line on stdin before each step:
//   node drain/ts-reconnect.mjs URL TOKEN
// prints `connected`, then (after a line on stdin) calls `fx__test_simple_text` and prints
// {"ok": true} or {"error": "…"}; every error the transport reports (a stream it could not
// resume, say) is printed as {"transportError": "…"}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createInterface } from 'node:readline';

const [url, token] = process.argv.slice(2);
const print = (line) => console.log(typeof line === 'string' ? line : JSON.stringify(line));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
  reconnectionOptions: {
    initialReconnectionDelay: 200,
    maxReconnectionDelay: 2000,
    reconnectionDelayGrowFactor: 1.5,
    maxRetries: 10,
  },
});
const client = new Client({ name: 'drain-reconnect', version: '1' });
await client.connect(transport);
transport.onerror = (error) => print({ transportError: String(error?.message ?? error) });
print('connected');

await lines.next();
try {
  const result = await client.callTool({ name: 'fx__test_simple_text', arguments: {} });
  print(result.isError ? { error: JSON.stringify(result.content) } : { ok: true });
} catch (error) {
  print({ error: String(error?.message ?? error) });
}
await lines.next();
await client.close();
process.exit(0);
