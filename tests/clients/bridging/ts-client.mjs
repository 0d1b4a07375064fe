// The official TypeScript SDK client running the bridging matrix's operations against one endpoint at
// one session revision (2025-03-26, 2025-06-18 or 2025-11-25). Prints one JSON line per operation:
//   {"op": "<name>", "result": …, "progress": […], "elicitations": n, "pages": [[uri…]…]}
// or {"op": "<name>", "error": {"code": <JSON-RPC code or null>, "message": "…"}}.
//   node bridging/ts-client.mjs URL TOKEN REVISION
//
// The SDK's Client has no option to choose the revision: `connect` always asks for its newest
// (LATEST_PROTOCOL_VERSION). The revision is pinned at the SDK's Transport seam instead: the
// transport's `send` rewrites `protocolVersion` in the `initialize` request; everything after
// (the answer's check, the MCP-Protocol-Version header) is the SDK's own.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const [url, token, revision] = process.argv.slice(2);
const TIMEOUT_MS = 10_000;
const ANSWER = { username: 'matrix-user', email: 'matrix-user@example.com' };

const print = (line) => console.log(JSON.stringify(line));
const failure = (op, error) => ({
  op,
  error: { code: typeof error?.code === 'number' ? error.code : null, message: String(error?.message ?? error) },
});

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const send = transport.send.bind(transport);
transport.send = (message, options) => {
  if (message.method === 'initialize') {
    message = { ...message, params: { ...message.params, protocolVersion: revision } };
  }
  return send(message, options);
};

const client = new Client({ name: 'gatehouse-matrix-ts', version: '1.0.0' }, { capabilities: { elicitation: {} } });
let elicitations = 0;
client.setRequestHandler(ElicitRequestSchema, async () => {
  elicitations += 1;
  return { action: 'accept', content: ANSWER };
});

const options = { timeout: TIMEOUT_MS };
const operations = {
  list: async () => ({ result: await client.listTools(undefined, options) }),
  call: async () => ({ result: await client.callTool({ name: 'test_simple_text', arguments: {} }, undefined, options) }),
  progress: async () => {
    const progress = [];
    const result = await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
      ...options,
      onprogress: (p) => progress.push(p),
    });
    return { result, progress };
  },
  elicit: async () => {
    elicitations = 0;
    const result = await client.callTool(
      { name: 'test_elicitation', arguments: { message: 'Who is calling?' } },
      undefined,
      options,
    );
    return { result, elicitations };
  },
  read: async () => ({ result: await client.readResource({ uri: 'test://static-text' }, options) }),
  prompt: async () => ({ result: await client.getPrompt({ name: 'test_simple_prompt' }, options) }),
  pages: async () => {
    const pages = [];
    let cursor;
    do {
      const page = await client.listResources(cursor === undefined ? {} : { cursor }, options);
      pages.push(page.resources.map((r) => r.uri));
      cursor = page.nextCursor;
    } while (cursor !== undefined && pages.length < 10);
    return { pages, more: cursor !== undefined };
  },
};

try {
  await client.connect(transport, options);
  print({ op: 'connect', result: { protocolVersion: transport.protocolVersion ?? null } });
} catch (error) {
  print(failure('connect', error));
  process.exit(0);
}
for (const [op, run] of Object.entries(operations)) {
  try {
    print({ op, ...(await run()) });
  } catch (error) {
    print(failure(op, error));
  }
}
await transport.terminateSession().catch(() => {});
await client.close().catch(() => {});
process.exit(0);
