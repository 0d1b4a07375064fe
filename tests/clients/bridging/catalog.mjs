// The catalog every test upstream of the bridging matrix serves (tests/e2e/dataplane/bridging_matrix.rs),
// registered on an official TypeScript SDK `McpServer`. It mirrors the names and payloads of the Rust
// fixture (tests/mcp-fixture), which are the MCP conformance suite's, so that one set of checks fits
// every upstream:
// - tools `test_simple_text` (no arguments), `test_tool_with_progress` (reports progress 0, 50, 100 of
//   100 to the caller's progress token) and `test_elicitation` (asks the client for a username and an
//   email with `elicitation/create` on the call's stream and returns what it answered);
// - resources `test://static-text`, `test://static-binary`, `test://watched-resource`, listed one per
//   page (`McpServer` does not paginate, so `resources/list` is replaced by a handler with a
//   server-side cursor);
// - prompt `test_simple_prompt`.
import { ElicitResultSchema, ErrorCode, ListResourcesRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod/v4';

export const PNG_1X1_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

const RESOURCES = [
  {
    uri: 'test://static-text',
    name: 'static-text',
    title: 'Static Text Resource',
    description: 'A static text resource for testing',
    mimeType: 'text/plain',
    contents: { text: 'This is the content of the static text resource.' },
  },
  {
    uri: 'test://static-binary',
    name: 'static-binary',
    title: 'Static Binary Resource',
    description: 'A static binary resource (image) for testing',
    mimeType: 'image/png',
    contents: { blob: PNG_1X1_BASE64 },
  },
  {
    uri: 'test://watched-resource',
    name: 'watched-resource',
    title: 'Watched Resource',
    description: 'A resource whose content changes over time',
    mimeType: 'text/plain',
    contents: { text: 'Watched resource content' },
  },
];
/** Resources per `resources/list` page. */
const PAGE_SIZE = 1;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Registers the catalog on `mcp` (an `McpServer`). */
export function registerCatalog(mcp) {
  mcp.registerTool(
    'test_simple_text',
    { description: 'Tests simple text content response' },
    async () => ({ content: [{ type: 'text', text: 'This is a simple text response for testing.' }] }),
  );

  mcp.registerTool(
    'test_tool_with_progress',
    { description: 'Tests tool that reports progress notifications' },
    async (extra) => {
      const token = extra._meta?.progressToken;
      if (token === undefined) {
        return { content: [{ type: 'text', text: 'No progress token was supplied, so no progress was reported' }] };
      }
      for (const [index, progress] of [0, 50, 100].entries()) {
        if (index > 0) await sleep(50);
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken: token, progress, total: 100, message: `Completed step ${progress} of 100` },
        });
      }
      return { content: [{ type: 'text', text: `Progress reported to token ${JSON.stringify(token)}` }] };
    },
  );

  mcp.registerTool(
    'test_elicitation',
    {
      description: 'Tests elicitation: asks the user for information',
      inputSchema: { message: z.string().describe('The message to show the user') },
    },
    // As the SDK's example server asks: a request related to the call, so that it travels on the
    // call's own response stream (not the session's GET stream).
    async ({ message }, extra) => {
      const answer = await extra.sendRequest(
        {
          method: 'elicitation/create',
          params: {
            mode: 'form',
            message,
            requestedSchema: {
              type: 'object',
              properties: {
                username: { type: 'string', description: "User's response" },
                email: { type: 'string', description: "User's email address" },
              },
              required: ['username', 'email'],
            },
          },
        },
        ElicitResultSchema,
      );
      return {
        content: [
          { type: 'text', text: `User response: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}` },
        ],
      };
    },
  );

  for (const resource of RESOURCES) {
    const { contents, uri, name, ...metadata } = resource;
    mcp.registerResource(name, uri, metadata, async () => ({
      contents: [{ uri, mimeType: metadata.mimeType, ...contents }],
    }));
  }
  // After the first registerResource: replaces McpServer's own (unpaged) resources/list handler.
  mcp.server.setRequestHandler(ListResourcesRequestSchema, async (request) => {
    const cursor = request.params?.cursor;
    const start = cursor === undefined ? 0 : Number.parseInt(cursor.replace(/^page-/, ''), 10);
    if (!Number.isInteger(start) || start < 0 || start > RESOURCES.length || (cursor !== undefined && !cursor.startsWith('page-'))) {
      throw new McpError(ErrorCode.InvalidParams, `unknown cursor ${cursor}`);
    }
    const end = Math.min(start + PAGE_SIZE, RESOURCES.length);
    const resources = RESOURCES.slice(start, end).map(({ contents, ...listed }) => listed);
    return end < RESOURCES.length ? { resources, nextCursor: `page-${end}` } : { resources };
  });

  mcp.registerPrompt('test_simple_prompt', { description: 'A simple prompt without arguments' }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));
}
