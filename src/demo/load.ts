// The application under test: N clients booking transfers wherever the traffic record points,
// as an application resolving the service's DNS name would. A write counts as acknowledged only
// when COMMIT returned; anything else (fenced, standby, connection refused) is an error the
// client retries with a fresh id after a short pause.
import { Pool } from 'pg';
import { createRoute53Activities } from '../../activities/traffic/route53';
import { postgresDatabase, type Config, type Service } from '../lib/config/schema';
import { dsn } from '../lib/postgres/node';
import { primaryRegionOf } from '../contract/traffic/plan';
import { advanceLoan, bookTransfer, LOANS, nodeOf, randomTransfer } from './ledger';
import { uuidv7 } from './uuidv7';

export interface Ack {
  id: string;
  /** The region whose server committed the write. */
  region: string;
  at: number;
}

export interface LoadOptions {
  clients?: number;
  /** Pause after a failed write before the next attempt. */
  retryPauseMs?: number;
  /** How long a resolved writer is reused; keeps the clients from hammering Route 53 (moto). */
  resolveCacheMs?: number;
  /** Share of writes (0..1) that move a loan one state forward instead of booking a transfer. */
  loanMoves?: number;
}

export interface WriteLoad {
  readonly clients: number;
  readonly acks: readonly Ack[];
  /** Failed attempts per reason (first words of the error), for the report. */
  readonly errors: ReadonlyMap<string, number>;
  /** Writes `region` acknowledged, at or after `sinceMs`. */
  ackedBy(region: string, sinceMs?: number): Ack[];
  /** Resolves with the first ack by `region` at or after `sinceMs`, or undefined after `timeoutMs`. */
  waitForAck(region: string, sinceMs: number, timeoutMs: number): Promise<Ack | undefined>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why a write failed, in a few words (the reports count failures by it). */
export function reasonOf(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  if (/read-only transaction/.test(msg)) return 'read-only (standby)';
  if (/pg_hba\.conf rejects connection/.test(msg)) return 'login refused (fenced)';
  if (/insufficient funds/.test(msg)) return 'insufficient funds';
  if (/ECONNREFUSED/.test(msg) || e.code === 'ECONNREFUSED') return 'connection refused';
  if (/terminat|Connection terminated/i.test(msg)) return 'session terminated';
  return msg.split('\n')[0]!.slice(0, 60) || 'unknown error';
}

export function startWriteLoad(config: Config, service: Service, opts: LoadOptions = {}): WriteLoad {
  const clients = opts.clients ?? 4;
  const retryPauseMs = opts.retryPauseMs ?? 50;
  const cacheMs = opts.resolveCacheMs ?? 100;
  const loanMoves = opts.loanMoves ?? 0;
  const traffic = createRoute53Activities(config);
  const acks: Ack[] = [];
  const errors = new Map<string, number>();
  const pools = new Map<string, Pool>();
  let stopped = false;
  let stopping: Promise<void> | undefined;

  const poolFor = (region: string): Pool => {
    let pool = pools.get(region);
    if (!pool) {
      const db = postgresDatabase(service).regions[region]!;
      pool = new Pool({
        connectionString: dsn(nodeOf(service, region), db.appUser, db.database),
        max: clients,
        connectionTimeoutMillis: 1_000,
        query_timeout: 3_000,
      });
      // A fenced or killed server ends sessions, idle or checked out; the next query reports it.
      pool.on('error', () => undefined);
      pool.on('connect', (c) => c.on('error', () => undefined));
      pools.set(region, pool);
    }
    return pool;
  };

  // One lookup in flight at a time, shared by every client.
  let cached: { region: string | undefined; at: number } | undefined;
  let pending: Promise<string | undefined> | undefined;
  const writer = (): Promise<string | undefined> => {
    if (cached && Date.now() - cached.at < cacheMs) return Promise.resolve(cached.region);
    pending ??= traffic
      .trafficDescribe({ service: service.name })
      .then((state) => primaryRegionOf(state))
      .then((region) => {
        cached = { region, at: Date.now() };
        return region;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };

  const count = (reason: string) => errors.set(reason, (errors.get(reason) ?? 0) + 1);

  const client = async (): Promise<void> => {
    while (!stopped) {
      let region: string | undefined;
      try {
        region = await writer();
      } catch (err) {
        count(`resolve: ${reasonOf(err)}`);
      }
      if (!region) {
        await sleep(retryPauseMs);
        continue;
      }
      const transfer = randomTransfer(uuidv7());
      let conn;
      try {
        conn = await poolFor(region).connect();
        const loan =
          loanMoves > 0 && Math.random() < loanMoves ? LOANS[Math.floor(Math.random() * LOANS.length)]! : undefined;
        const committedBy = loan ? await advanceLoan(conn, transfer.id, loan) : await bookTransfer(conn, transfer);
        if (committedBy) acks.push({ id: transfer.id, region: committedBy, at: Date.now() });
        conn.release();
      } catch (err) {
        // A session that failed may be broken: release(err) discards it instead of reusing it.
        conn?.release(err as Error);
        count(reasonOf(err));
        await sleep(retryPauseMs);
      }
    }
  };

  const running = Array.from({ length: clients }, () => client());

  return {
    clients,
    acks,
    errors,
    ackedBy: (region, sinceMs = 0) => acks.filter((a) => a.region === region && a.at >= sinceMs),
    async waitForAck(region, sinceMs, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const ack = acks.find((a) => a.region === region && a.at >= sinceMs);
        if (ack || Date.now() >= deadline || stopped) return ack;
        await sleep(25);
      }
    },
    stop() {
      stopped = true;
      stopping ??= Promise.all(running)
        .then(() => Promise.all([...pools.values()].map((p) => p.end().catch(() => undefined))))
        .then(() => undefined);
      return stopping;
    },
  };
}
