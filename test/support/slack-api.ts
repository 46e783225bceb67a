// A local stand-in for the Slack Web API (WebClient option slackApiUrl = <url>/api/) that
// records every call and keeps the channel's messages, threads and metadata the way Slack
// would, so the bot's messages can be asserted by content and found again after a restart.
// It also signs requests to the bot as Slack does (v0 HMAC-SHA256 over "v0:<ts>:<body>").
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { STATUS_READING } from '../../src/slack/slash';
import { waitFor } from './wait';

export interface Call {
  method: string;
  args: Record<string, unknown>;
}

export interface Message {
  channel: string;
  ts: string;
  text: string;
  blocks?: unknown[];
  thread_ts?: string;
  metadata?: { event_type: string; event_payload: Record<string, unknown> };
  updates: number;
}

export interface SlackApi {
  url: string;
  /** For WebClient: `${url}/api/`. */
  apiUrl: string;
  calls: Call[];
  messages: Message[];
  /** Bodies POSTed to response_url (/response/...). */
  responses: { path: string; body: Record<string, unknown> }[];
  /** A response_url of this API no request was given before. */
  responseUrl(): string;
  usergroups: Map<string, string[]>;
  /** What apps.connections.open answers (Socket Mode). */
  socketModeUrl?: string;
  callsOf(method: string): Call[];
  close(): Promise<void>;
}

const JSON_FIELDS = ['blocks', 'metadata', 'attachments'];

function parseArgs(body: string, contentType: string | undefined): Record<string, unknown> {
  if (!body) return {};
  if (contentType?.includes('application/json')) return JSON.parse(body) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(body)) {
    out[k] = JSON_FIELDS.includes(k) ? JSON.parse(v) : v;
  }
  return out;
}

export async function startSlackApi(): Promise<SlackApi> {
  const calls: Call[] = [];
  const messages: Message[] = [];
  const responses: SlackApi['responses'] = [];
  const usergroups = new Map<string, string[]>();
  let clock = 1_700_000_000;
  let responseUrls = 0;
  let self: SlackApi;
  const nextTs = (): string => `${++clock}.000100`;

  const api = (method: string, args: Record<string, unknown>): Record<string, unknown> => {
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://regionshift-test.slack.com/',
          team: 'test',
          user: 'regionshift',
          team_id: 'T0TEST',
          user_id: 'UBOT0001',
          bot_id: 'BBOT0001',
        };
      case 'chat.postMessage': {
        const m: Message = {
          channel: String(args.channel),
          ts: nextTs(),
          text: String(args.text ?? ''),
          updates: 0,
          ...(args.blocks ? { blocks: args.blocks as unknown[] } : {}),
          ...(args.thread_ts ? { thread_ts: String(args.thread_ts) } : {}),
          ...(args.metadata ? { metadata: args.metadata as Message['metadata'] } : {}),
        };
        messages.push(m);
        return { ok: true, channel: m.channel, ts: m.ts, message: { text: m.text, ts: m.ts } };
      }
      case 'chat.update': {
        const m = messages.find((x) => x.channel === args.channel && x.ts === args.ts);
        if (!m) return { ok: false, error: 'message_not_found' };
        m.text = String(args.text ?? m.text);
        if (args.blocks) m.blocks = args.blocks as unknown[];
        m.updates++;
        return { ok: true, channel: m.channel, ts: m.ts };
      }
      case 'chat.postEphemeral':
        return { ok: true, message_ts: nextTs() };
      case 'conversations.history': {
        const top = messages.filter((m) => m.channel === args.channel && !m.thread_ts).reverse();
        return {
          ok: true,
          messages: top.map((m) => ({
            type: 'message',
            ts: m.ts,
            text: m.text,
            ...(m.metadata && args.include_all_metadata ? { metadata: m.metadata } : {}),
          })),
          has_more: false,
        };
      }
      case 'conversations.replies': {
        const thread = messages.filter(
          (m) => m.channel === args.channel && (m.ts === args.ts || m.thread_ts === args.ts),
        );
        return {
          ok: true,
          messages: thread.map((m) => ({
            type: 'message',
            ts: m.ts,
            text: m.text,
            ...(m.metadata && args.include_all_metadata ? { metadata: m.metadata } : {}),
          })),
          has_more: false,
        };
      }
      case 'apps.connections.open':
        return self.socketModeUrl
          ? { ok: true, url: self.socketModeUrl }
          : { ok: false, error: 'not_allowed_token_type' };
      case 'usergroups.users.list':
        return { ok: true, users: usergroups.get(String(args.usergroup)) ?? [] };
      default:
        return { ok: false, error: 'unknown_method' };
    }
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '/';
      if (path.startsWith('/response/')) {
        responses.push({ path, body: JSON.parse(body || '{}') as Record<string, unknown> });
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
        return;
      }
      const method = path.replace(/^\/api\//, '').split('?')[0]!;
      const args = parseArgs(body, req.headers['content-type']);
      calls.push({ method, args });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(api(method, args)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  self = {
    url,
    apiUrl: `${url}/api/`,
    calls,
    messages,
    responses,
    responseUrl: () => `${url}/response/u${++responseUrls}`,
    usergroups,
    callsOf: (method) => calls.filter((c) => c.method === method),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return self;
}

/** Headers Slack sends with a request body: its timestamp and v0 signature. */
export function slackSignature(
  secret: string,
  body: string,
  timestamp = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const sig = createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex');
  return { 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': `v0=${sig}` };
}

/**
 * A slash command's final answer, whichever way it came: the ack itself, or, when the ack says the
 * bot is still reading (a `status` slower than the bot waits, src/slack/slash.ts), the first body
 * the bot POSTed to the response_url it was given. The second part is slow by definition: the
 * default timeout is generous.
 */
export async function finalAnswer(
  api: SlackApi,
  responseUrl: string,
  ack: { status: number; text: string },
  timeoutMs = 30_000,
): Promise<{ status: number; text: string }> {
  if (!ack.text.startsWith(STATUS_READING)) return ack;
  const path = new URL(responseUrl).pathname;
  const later = await waitFor(
    `the answer the bot POSTs to ${responseUrl} after "${ack.text}"`,
    async () => api.responses.find((r) => r.path === path),
    timeoutMs,
  );
  return { status: ack.status, text: String(later.body.text) };
}
