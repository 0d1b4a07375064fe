// An MCP server on the deprecated HTTP+SSE transport (protocol 2024-11-05), built with the official
// TypeScript SDK, for the dataplane's upstream-transport test. Prints "listening <port>".
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { z } from 'zod';

const transports = new Map();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/sse') {
    const mcp = new McpServer({ name: 'legacy-sse', version: '1.0.0' });
    mcp.tool('legacy_echo', 'Echoes its text', { text: z.string() }, async ({ text }) => ({
      content: [{ type: 'text', text: `legacy:${text}` }],
    }));
    const transport = new SSEServerTransport('/messages', res);
    transports.set(transport.sessionId, transport);
    res.on('close', () => transports.delete(transport.sessionId));
    await mcp.connect(transport);
    return;
  }
  if (req.method === 'POST' && url.pathname === '/messages') {
    const transport = transports.get(url.searchParams.get('sessionId'));
    if (!transport) {
      res.writeHead(404).end('no such session');
      return;
    }
    await transport.handlePostMessage(req, res);
    return;
  }
  res.writeHead(404).end();
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
