// The codec server: the Temporal Web UI (and `temporal --codec-endpoint`) POST payloads here to
// have them decrypted for display, or encrypted before a start or signal from the UI. Protocol:
// POST /encode and /decode (also /<namespace>/encode|decode), body {"payloads":[…]} with each
// payload in protobuf JSON (metadata values and data in base64), namespace in X-Namespace.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';

export interface CodecServerOptions {
  codec: PayloadCodec;
  host?: string;
  port?: number;
  /** Browser origins allowed to call (the Temporal UI's); "*" allows any. */
  origins: string[];
  /** When set, every POST needs `Authorization: Bearer <token>`. */
  token?: string;
  /** When set, only these namespaces are served. */
  namespaces?: string[];
  log?: (line: string) => void;
}

export interface CodecServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** The headers the UI sends: its JSON body, the namespace, and the user's token when configured to pass it. */
export const ALLOWED_HEADERS = ['Content-Type', 'X-Namespace', 'Authorization'];
const MAX_BODY_BYTES = 32 * 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

function fromJson(p: unknown, i: number): Payload {
  if (typeof p !== 'object' || p === null || Array.isArray(p))
    throw new HttpError(400, `payloads[${i}] is not an object`);
  const { metadata, data } = p as JsonPayload;
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null))
    throw new HttpError(400, `payloads[${i}].metadata is not an object`);
  if (data !== undefined && typeof data !== 'string')
    throw new HttpError(400, `payloads[${i}].data is not a base64 string`);
  const meta: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') throw new HttpError(400, `payloads[${i}].metadata.${k} is not a base64 string`);
    meta[k] = Buffer.from(v, 'base64');
  }
  return { metadata: meta, data: Buffer.from(data ?? '', 'base64') };
}

function toJson(p: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, b64(v)])),
    data: b64(p.data ?? new Uint8Array()),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const log = opts.log ?? (() => undefined);
  const anyOrigin = opts.origins.includes('*');

  const cors = (req: IncomingMessage, res: ServerResponse): boolean => {
    const origin = req.headers.origin;
    if (!origin) return true;
    if (!anyOrigin && !opts.origins.includes(origin)) return false;
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Vary', 'Origin');
    // The UI's "include cross-origin credentials" setting sends cookies: allowed for listed origins.
    res.setHeader('Access-Control-Allow-Credentials', 'true');
    return true;
  };

  const authorize = (req: IncomingMessage): void => {
    if (opts.token === undefined) return;
    const header = req.headers.authorization;
    if (!header) throw new HttpError(401, 'missing Authorization: Bearer <token>');
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m || !timingSafeEqual(digest(m[1]!.trim()), digest(opts.token)))
      throw new HttpError(403, "the bearer token is not the codec server's");
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://codec').pathname;
    const m = /^(?:\/([^/]+))?\/(encode|decode)$/.exec(path);
    if (!m) throw new HttpError(404, `no such endpoint ${path}; use POST /encode or /decode`);
    const allowed = cors(req, res);
    if (req.method === 'OPTIONS') {
      // Preflights carry no credentials: they are answered before the token check.
      if (!allowed) throw new HttpError(403, `origin ${req.headers.origin} is not allowed`);
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS.join(', '));
      res.setHeader('Access-Control-Max-Age', '600');
      res.writeHead(204).end();
      return;
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST, OPTIONS');
      throw new HttpError(405, `${req.method} ${path}: use POST`);
    }
    if (!allowed) throw new HttpError(403, `origin ${req.headers.origin} is not allowed`);
    authorize(req);
    const namespace = m[1] ? decodeURIComponent(m[1]) : (req.headers['x-namespace'] as string | undefined);
    if (opts.namespaces && (!namespace || !opts.namespaces.includes(namespace))) {
      throw new HttpError(
        403,
        `namespace ${namespace ?? '(none: set X-Namespace)'} is not served here (served: ${opts.namespaces.join(', ')})`,
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new HttpError(400, 'the body is not JSON; send {"payloads":[…]}');
    }
    const list = (body as { payloads?: unknown } | null)?.payloads;
    if (!Array.isArray(list)) throw new HttpError(400, 'the body has no "payloads" array');
    const payloads = list.map(fromJson);
    let out: Payload[];
    try {
      out = m[2] === 'encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
    } catch (err) {
      throw new HttpError(422, (err as Error).message);
    }
    res.setHeader('Content-Type', 'application/json');
    res.writeHead(200).end(JSON.stringify({ payloads: out.map(toJson) }));
    log(`codec-server: ${m[2]} ${payloads.length} payload(s)${namespace ? ` for ${namespace}` : ''}`);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = (err as Error).message;
      if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="regionshift-codec"');
      if (status >= 422) log(`codec-server: ${req.method} ${req.url} → ${status}: ${message}`);
      if (!res.headersSent) res.setHeader('Content-Type', 'application/json');
      res.writeHead(status).end(JSON.stringify({ error: message }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // The UI keeps connections alive; closing must not wait for it to let go.
        server.closeAllConnections();
      }),
  };
}
