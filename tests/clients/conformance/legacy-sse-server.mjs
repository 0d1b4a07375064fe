// An MCP server on the deprecated HTTP+SSE transport (protocol 2024-11-05), built with the official
// TypeScript SDK, for the dataplane's upstream-transport test. Prints "listening <port>".
// Usage: node legacy-sse-server.mjs [--sampling]
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { z } from 'zod';

const withSampling = process.argv.includes('--sampling');
const transports = new Map();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/sse') {
    const mcp = new McpServer({ name: 'legacy-sse', version: '1.0.0' });
    mcp.tool('legacy_echo', 'Echoes its text', { text: z.string() }, async ({ text }) => ({
      content: [{ type: 'text', text: `legacy:${text}` }],
    }));
    // With --sampling: a tool that asks the client for a completion on this connection and
    // returns what it said.
    if (withSampling) mcp.tool('legacy_sample', 'Asks the client to complete a prompt', { prompt: z.string() }, async ({ prompt }) => {
      const sampled = await mcp.server.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: prompt } }],
        maxTokens: 16,
      });
      return { content: [{ type: 'text', text: `sampled:${sampled.content.text}` }] };
    });
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
