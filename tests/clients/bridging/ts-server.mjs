// An MCP server on the official TypeScript SDK, for the bridging matrix. Prints `listening <port>`.
//   node bridging/ts-server.mjs streamable   Streamable HTTP at /mcp with sessions, as the SDK's
//                                             examples/server/simpleStreamableHttp does: a session per
//                                             `initialize` (StreamableHTTPServerTransport, an event
//                                             store for resumability), the revision the SDK speaks
//                                             (2025-11-25 and older). A request without a valid session
//                                             gets the example's answer (400 -32000 "Bad Request: No
//                                             valid session ID provided"; 404 for an unknown session).
//   node bridging/ts-server.mjs sse          The deprecated HTTP+SSE transport (2024-11-05): GET /sse
//                                             opens a connection, POST /messages?sessionId=… carries the
//                                             client's messages (SSEServerTransport).
// Both serve the catalog of bridging/catalog.mjs.
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { InMemoryEventStore } from '@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js';
import { registerCatalog } from './catalog.mjs';

const mode = process.argv[2];
if (mode !== 'streamable' && mode !== 'sse') {
  console.error('usage: node bridging/ts-server.mjs streamable|sse');
  process.exit(2);
}

const newServer = () => {
  const mcp = new McpServer({ name: `matrix-ts-${mode}`, version: '1.0.0' });
  registerCatalog(mcp);
  return mcp;
};

const app = createMcpExpressApp();

if (mode === 'streamable') {
  const transports = new Map();
  app.post('/mcp', async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    try {
      let transport = sessionId ? transports.get(sessionId) : undefined;
      if (!transport && !sessionId && isInitializeRequest(req.body)) {
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          eventStore: new InMemoryEventStore(),
          onsessioninitialized: (id) => transports.set(id, transport),
        });
        transport.onclose = () => {
          if (transport.sessionId) transports.delete(transport.sessionId);
        };
        await newServer().connect(transport);
      } else if (!transport && sessionId) {
        res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
        return;
      } else if (!transport) {
        res.status(400).json({
          jsonrpc: '2.0',
          error: { code: -32000, message: 'Bad Request: No valid session ID provided' },
          id: null,
        });
        return;
      }
      await transport.handleRequest(req, res, req.body);
    } catch (error) {
      console.error('error handling an MCP request:', error);
      if (!res.headersSent) {
        res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
      }
    }
  });
  // GET (the standalone stream, resumption) and DELETE (end of session) need a known session.
  const sessionRequest = async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    if (!sessionId) {
      res.status(400).send('Missing session ID');
      return;
    }
    const transport = transports.get(sessionId);
    if (!transport) {
      res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
      return;
    }
    await transport.handleRequest(req, res);
  };
  app.get('/mcp', sessionRequest);
  app.delete('/mcp', sessionRequest);
} else {
  const transports = new Map();
  app.get('/sse', async (req, res) => {
    const transport = new SSEServerTransport('/messages', res);
    transports.set(transport.sessionId, transport);
    res.on('close', () => transports.delete(transport.sessionId));
    await newServer().connect(transport);
  });
  app.post('/messages', async (req, res) => {
    const transport = transports.get(String(req.query.sessionId));
    if (!transport) {
      res.status(404).send('Session not found');
      return;
    }
    await transport.handlePostMessage(req, res, req.body);
  });
}

const listener = app.listen(0, '127.0.0.1', () => console.log(`listening ${listener.address().port}`));
