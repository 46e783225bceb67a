// The demo's banking application: it books a transfer every few milliseconds in the region it was
// last told is primary, and never looks for the primary itself (the reference design patches
// BANKING_PRIMARY_REGION into its deployment). The service's runbooks tell it through http.call
// (runbooks/ledger-failover.yaml, ledger-failback.yaml): POST /primary with an Idempotency-Key,
// so a retried step, or the same step replayed, changes nothing a second time. GET /status says
// whom it follows and where its last write landed, for the demo and for a person (curl).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'pg';
import { postgresDatabase, type Service } from '../lib/config/schema';
import { dsn } from '../lib/postgres/node';
import { bookTransfer, nodeOf, randomTransfer } from './ledger';
import { reasonOf } from './load';
import { uuidv7 } from './uuidv7';

export interface AppTold {
  key: string;
  primary: string;
  previous: string;
  /** The run that told it, when the body named one. */
  run?: string;
  at: string;
}

export interface AppStatus {
  service: string;
  primary: string;
  /** Every change of primary, oldest first. */
  told: AppTold[];
  /** Writes committed, per committing region (the server's cluster_name). */
  writes: Record<string, number>;
  last: { id: string; region: string; at: string } | null;
  /** Failed writes per reason. */
  errors: Record<string, number>;
}

export interface DemoApp {
  url: string;
  status(): AppStatus;
  close(): Promise<void>;
}

export interface DemoAppOptions {
  port: number;
  host?: string;
  /** Where it writes until told otherwise; default the service's first region (the stack makes it the writer). */
  primary?: string;
  /** Pause between two writes. */
  intervalMs?: number;
}

/** Answers kept per Idempotency-Key; an older key is forgotten (a retry comes within seconds). */
const KEYS_KEPT = 1000;
const MAX_BODY = 64 * 1024;

interface Answer {
  status: number;
  body: string;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((ok, fail) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
      if (body.length > MAX_BODY) req.destroy(new Error('body too large'));
    });
    req.on('end', () => ok(body));
    req.on('error', fail);
  });
}

export async function startDemoApp(service: Service, opts: DemoAppOptions): Promise<DemoApp> {
  const regions = Object.keys(postgresDatabase(service).regions);
  let primary = opts.primary ?? service.regions[0]!;
  const intervalMs = opts.intervalMs ?? 100;
  const told: AppTold[] = [];
  const answers = new Map<string, Answer>();
  const writes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let last: AppStatus['last'] = null;
  const pools = new Map<string, Pool>();
  let stopped = false;

  const poolFor = (region: string): Pool => {
    let pool = pools.get(region);
    if (!pool) {
      const db = postgresDatabase(service).regions[region]!;
      pool = new Pool({
        connectionString: dsn(nodeOf(service, region), db.appUser, db.database),
        max: 1,
        connectionTimeoutMillis: 1_000,
        query_timeout: 3_000,
      });
      // A fenced or killed server ends its sessions; the next write reports it.
      pool.on('error', () => undefined);
      pool.on('connect', (c) => c.on('error', () => undefined));
      pools.set(region, pool);
    }
    return pool;
  };

  const writeLoop = async (): Promise<void> => {
    while (!stopped) {
      const t = randomTransfer(uuidv7());
      let conn;
      try {
        conn = await poolFor(primary).connect();
        const region = await bookTransfer(conn, t);
        conn.release();
        writes[region] = (writes[region] ?? 0) + 1;
        last = { id: t.id, region, at: new Date().toISOString() };
      } catch (err) {
        conn?.release(err as Error);
        const reason = reasonOf(err);
        errors[reason] = (errors[reason] ?? 0) + 1;
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  };

  const tell = (key: string, raw: string): Answer => {
    let body: { primary?: unknown; run?: unknown };
    try {
      body = JSON.parse(raw) as typeof body;
    } catch {
      return { status: 400, body: 'the body must be JSON: {"primary": "<region>"}\n' };
    }
    const want = body.primary;
    if (typeof want !== 'string' || !regions.includes(want)) {
      return {
        status: 422,
        body: `primary ${JSON.stringify(want)} is not a region of ${service.name} (${regions.join(', ')})\n`,
      };
    }
    if (want === primary) return { status: 200, body: `already writing to ${want}\n` };
    const previous = primary;
    primary = want;
    told.push({
      key,
      primary: want,
      previous,
      ...(typeof body.run === 'string' ? { run: body.run } : {}),
      at: new Date().toISOString(),
    });
    return { status: 200, body: `now writing to ${want} (was ${previous})\n` };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (a: Answer, headers: Record<string, string> = {}): void => {
      res.writeHead(a.status, { 'content-type': 'text/plain; charset=utf-8', ...headers }).end(a.body);
    };
    if (req.method === 'GET' && path === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status()));
      return;
    }
    if (path !== '/primary') return send({ status: 404, body: 'try POST /primary or GET /status\n' });
    if (req.method !== 'POST')
      return send({ status: 405, body: 'POST /primary {"primary": "<region>"}\n' }, { allow: 'POST' });
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || !key) return send({ status: 400, body: 'an Idempotency-Key header is required\n' });
    const raw = await readBody(req);
    // The same key gets the first answer again and changes nothing: a retried step after a later
    // run's change must not move the application back.
    const seen = answers.get(key);
    if (seen) return send(seen, { 'idempotent-replayed': 'true' });
    const answer = tell(key, raw);
    answers.set(key, answer);
    if (answers.size > KEYS_KEPT) answers.delete(answers.keys().next().value!);
    send(answer);
  };

  const status = (): AppStatus => ({
    service: service.name,
    primary,
    told: [...told],
    writes: { ...writes },
    last,
    errors: { ...errors },
  });

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => ok());
  });
  const loop = writeLoop();
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    status,
    async close() {
      stopped = true;
      await new Promise((r) => server.close(r));
      await loop;
      await Promise.all([...pools.values()].map((p) => p.end().catch(() => undefined)));
    },
  };
}

/** The application's status, asked over HTTP (the demo runs in another process). */
export async function appStatus(url: string, timeoutMs = 5_000): Promise<AppStatus> {
  const res = await fetch(`${url}/status`, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`${url}/status answered ${res.status}`);
  return (await res.json()) as AppStatus;
}
