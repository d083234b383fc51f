/**
 * A loopback stand-in for the three model APIs the real agent CLIs call, answering one
 * completion each in the streaming shape the CLI expects:
 * - Anthropic Messages (`POST /v1/messages`, SSE): Claude Code;
 * - OpenAI Responses (`POST /v1/responses`, SSE): Codex;
 * - Gemini (`POST /v1beta/models/M:streamGenerateContent?alt=sse` or `:generateContent`).
 * Every request is recorded (method, url, headers) so a test can see it arrived, and
 * through which hop (the proxy adds no header, so tests compare against the audit log).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface FakeApi {
  port: number;
  seen: SeenRequest[];
  close(): Promise<void>;
}

const sse = (res: ServerResponse, events: [string | undefined, unknown][]) => {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const [event, data] of events) res.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`);
  res.end();
};

function anthropic(res: ServerResponse, text: string, model: string) {
  const id = 'msg_fake01';
  sse(res, [
    ['message_start', { type: 'message_start', message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 5, output_tokens: 1 } } }],
    ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
    ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }],
    ['content_block_stop', { type: 'content_block_stop', index: 0 }],
    ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 4 } }],
    ['message_stop', { type: 'message_stop' }],
  ]);
}

function openaiResponses(res: ServerResponse, text: string, model: string) {
  const item = { id: 'msg_fake01', type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text, annotations: [] }] };
  const response = { id: 'resp_fake01', object: 'response', created_at: Math.floor(Date.now() / 1000), model, status: 'completed', output: [item], usage: { input_tokens: 5, input_tokens_details: { cached_tokens: 0 }, output_tokens: 4, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 9 } };
  sse(res, [
    ['response.created', { type: 'response.created', sequence_number: 0, response: { ...response, status: 'in_progress', output: [] } }],
    ['response.output_item.added', { type: 'response.output_item.added', sequence_number: 1, output_index: 0, item: { ...item, status: 'in_progress', content: [] } }],
    ['response.output_text.delta', { type: 'response.output_text.delta', sequence_number: 2, item_id: item.id, output_index: 0, content_index: 0, delta: text }],
    ['response.output_item.done', { type: 'response.output_item.done', sequence_number: 3, output_index: 0, item }],
    ['response.completed', { type: 'response.completed', sequence_number: 4, response }],
  ]);
}

function gemini(res: ServerResponse, text: string, stream: boolean) {
  const chunk = { candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP', index: 0 }], usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 4, totalTokenCount: 9 }, modelVersion: 'gemini-2.5-pro' };
  if (stream) sse(res, [[undefined, chunk]]);
  else {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(chunk));
  }
}

/** Starts the server on 127.0.0.1 (an ephemeral port); every answer says `text`. */
/** `tls`: serve HTTPS with this key and certificate (a test CA's), HTTP/1.1. */
export async function startFakeApi(text: string, tls?: { key: string; cert: string }): Promise<FakeApi> {
  const seen: SeenRequest[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const url = new URL(req.url ?? '/', 'http://fake');
      let model = 'fake-model';
      try {
        model = (JSON.parse(body) as { model?: string }).model ?? model;
      } catch {
        // not JSON: keep the default
      }
      if (req.method === 'POST' && /\/v1\/messages$/.test(url.pathname)) {
        if (/count_tokens/.test(url.pathname)) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"input_tokens":5}');
        return anthropic(res, text, model);
      }
      if (req.method === 'POST' && /\/responses$/.test(url.pathname)) return openaiResponses(res, text, model);
      if (req.method === 'POST' && /:streamGenerateContent$/.test(url.pathname)) return gemini(res, text, true);
      if (req.method === 'POST' && /:generateContent$/.test(url.pathname)) return gemini(res, text, false);
      if (req.method === 'POST' && /:countTokens$/.test(url.pathname)) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"totalTokens":5}');
      if (req.method === 'GET' && /\/models$/.test(url.pathname)) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[],"models":[]}');
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"type":"not_found","message":"fake API: no such route"}}');
    });
  };
  const server: Server = tls ? createHttpsServer(tls, handler) : createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { port, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}
