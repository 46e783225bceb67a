// The postgres-streaming provider against a real primary (us-west-2) and streaming standby
// (us-east-1): fencing and its proof, lag, promotion, rejoin with pg_rewind, and a full planned
// switchover. The activity functions are called directly; Temporal is not needed for this.
// Tests run in order and share the pair: each leaves it in the state the next one expects.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresActivities, DbFailure, type PostgresActivities } from '../activities/db/postgres';
import { attemptReadWriteLogin, lsnToBigInt, type ConnTarget } from '../activities/db/sql';
import { Config } from '../src/lib/config/schema';
import { psql, stop, type PgNode } from '../src/lib/postgres/node';
import { createPgPair, type PgPair } from './support/pg-pair';

const SERVICE = { service: 'ledger' };

let pair: PgPair;
let config: Config;
let west: PostgresActivities;
let east: PostgresActivities;

function buildConfig(p: PgPair): Config {
  const node = (n: PgNode) => ({ host: n.host, port: n.port, dataDir: n.dataDir });
  const traffic = (regions: string[]) => ({
    provider: 'route53',
    hostedZone: 'regionshift.test.',
    recordName: 'svc.regionshift.test.',
    endpoints: Object.fromEntries(regions.map((r) => [r, `db.${r}.regionshift.test.`])),
  });
  return Config.parse({
    services: [
      {
        name: 'ledger',
        regions: ['us-west-2', 'us-east-1'],
        database: {
          provider: 'postgres-streaming',
          regions: { 'us-west-2': node(p.primary), 'us-east-1': node(p.standby) },
        },
        traffic: traffic(['us-west-2', 'us-east-1']),
      },
      {
        // No database in us-east-1, and an address in us-west-2 nothing answers on.
        name: 'orders',
        regions: ['us-west-2', 'eu-west-1'],
        database: {
          provider: 'postgres-streaming',
          regions: {
            'us-west-2': { host: '10.255.255.1', port: 5432, dataDir: '/nonexistent/orders-us-west-2' },
            'eu-west-1': { host: '127.0.0.1', port: 1, dataDir: '/nonexistent/orders-eu-west-1' },
          },
        },
        traffic: traffic(['us-west-2', 'eu-west-1']),
      },
    ],
  });
}

let hbaBeforeFence: string;

function hbaOf(node: PgNode): string {
  return join(node.dataDir, 'pg_hba.conf');
}

function appTarget(node: PgNode): ConnTarget {
  return { host: node.host, port: node.port, database: 'postgres', user: 'app' };
}

/** A session as the application role, the way the application would hold one. */
async function appSession(node: PgNode): Promise<Client> {
  const client = new Client({
    host: node.host,
    port: node.port,
    user: 'app',
    database: 'postgres',
    connectionTimeoutMillis: 3_000,
  });
  client.on('error', () => undefined); // terminated by the fence on purpose
  await client.connect();
  return client;
}

async function appWrite(node: PgNode, note: string): Promise<number> {
  const client = await appSession(node);
  try {
    const { rows } = await client.query<{ id: string }>('INSERT INTO ledger (note) VALUES ($1) RETURNING id', [note]);
    return Number(rows[0]!.id);
  } finally {
    await client.end();
  }
}

async function adminQuery<T extends object>(node: PgNode, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({
    host: node.host,
    port: node.port,
    user: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 3_000,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function failure(promise: Promise<unknown>): Promise<ApplicationFailure> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }
  throw new Error('expected the call to fail, and it succeeded');
}

async function sqlStateOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return 'no error';
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function formatLsn(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}

beforeAll(async () => {
  pair = await createPgPair({ primaryRegion: 'us-west-2', standbyRegion: 'us-east-1' });
  config = buildConfig(pair);
  west = createPostgresActivities(config, 'us-west-2');
  east = createPostgresActivities(config, 'us-east-1');
  await psql(
    pair.bin,
    pair.primary,
    'SET ROLE app; CREATE TABLE ledger (id bigserial PRIMARY KEY, note text NOT NULL);',
  );
});

afterAll(async () => {
  await pair?.teardown();
});

describe('postgres-streaming provider', () => {
  it('describes the primary and a standby streaming from it', async () => {
    const w = await west.dbDescribe(SERVICE);
    expect(w).toMatchObject({ region: 'us-west-2', reachable: true, role: 'primary', fenced: false, timeline: 1 });
    expect(w.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const e = await eventually('the standby streams', async () => {
      const s = await east.dbDescribe(SERVICE);
      return s.streamingFrom ? s : undefined;
    });
    expect(e).toMatchObject({
      region: 'us-east-1',
      reachable: true,
      role: 'standby',
      timeline: 1,
      streamingFrom: `127.0.0.1:${pair.primary.port}`,
    });
    expect(e.receivedLsn).toBeDefined();
    expect(e.lsn).toBeDefined();
    expect(Date.parse(e.lastHeardFromPrimaryAt!)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('refuses a service it does not know, or one without a database in its region, naming them', async () => {
    const unknown = await failure(west.dbDescribe({ service: 'payments' }));
    expect(unknown.nonRetryable).toBe(true);
    expect(unknown.type).toBe(DbFailure.UnknownService);
    expect(unknown.message).toContain('"payments"');
    expect(unknown.message).toContain('us-west-2');
    const elsewhere = await failure(east.dbFenceWrites({ service: 'orders' }));
    expect(elsewhere.nonRetryable).toBe(true);
    expect(elsewhere.message).toContain('"orders"');
    expect(elsewhere.message).toContain('us-east-1');
  });

  it('fences: the app role is refused, sessions opened before the fence cannot commit, and it is idempotent', async () => {
    await appWrite(pair.primary, 'before any fence');
    // A transaction opened before the fence, still uncommitted when it lands...
    const inFlight = await appSession(pair.primary);
    await inFlight.query('BEGIN');
    await inFlight.query("INSERT INTO ledger (note) VALUES ('opened before the fence')");
    // ...and a session that opted out of read-only for itself, as a driver resetting it would.
    const optedOut = await appSession(pair.primary);
    await optedOut.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE');
    hbaBeforeFence = readFileSync(hbaOf(pair.primary), 'utf8');

    const fence = await west.dbFenceWrites(SERVICE);
    expect(fence).toMatchObject({ region: 'us-west-2', alreadyFenced: false, verified: true });
    expect(fence.terminatedSessions).toBeGreaterThanOrEqual(2);

    await expect(inFlight.query('COMMIT')).rejects.toThrow();
    await expect(optedOut.query("INSERT INTO ledger (note) VALUES ('opted out')")).rejects.toThrow();
    await inFlight.end().catch(() => undefined);
    await optedOut.end().catch(() => undefined);
    // The wall: the application role cannot even log in, so it cannot ask for read-write.
    expect(await sqlStateOf(appWrite(pair.primary, 'after the fence'))).toBe('28000');
    expect(await attemptReadWriteLogin(appTarget(pair.primary))).toBe('login-refused');
    expect(fence.detail).toContain('pg_hba.conf rejects app');
    const notes = (await adminQuery<{ note: string }>(pair.primary, 'SELECT note FROM ledger')).map((r) => r.note);
    expect(notes).toEqual(['before any fence']);

    expect(await west.dbDescribe(SERVICE)).toMatchObject({ role: 'primary', fenced: true });
    const notWritable = await failure(west.dbVerifyWrites(SERVICE));
    expect(notWritable.type).toBe(DbFailure.NotWritable);
    expect(notWritable.nonRetryable).toBe(true);
    expect(notWritable.message).toContain('us-west-2');

    const again = await west.dbFenceWrites(SERVICE);
    expect(again).toMatchObject({ alreadyFenced: true, verified: true, terminatedSessions: 0 });
    expect(lsnToBigInt(again.lsn)).toBeGreaterThanOrEqual(lsnToBigInt(fence.lsn));

    // A standby refuses writes by construction: fencing it holds trivially.
    expect(await east.dbFenceWrites(SERVICE)).toMatchObject({
      region: 'us-east-1',
      alreadyFenced: true,
      verified: true,
      terminatedSessions: 0,
    });
  });

  it('unfences a fenced primary (compensation) and says when there is nothing to undo', async () => {
    const standby = await east.dbUnfenceWrites(SERVICE);
    expect(standby.unfenced).toBe(false);
    expect(standby.detail).toMatch(/standby/);

    expect(await west.dbUnfenceWrites(SERVICE)).toMatchObject({ region: 'us-west-2', unfenced: true });
    // Exactly as it was: the same pg_hba.conf byte for byte, and the application writes again.
    expect(readFileSync(hbaOf(pair.primary), 'utf8')).toBe(hbaBeforeFence);
    await appWrite(pair.primary, 'after unfence');
    expect(await west.dbDescribe(SERVICE)).toMatchObject({ fenced: false });

    const twice = await west.dbUnfenceWrites(SERVICE);
    expect(twice.unfenced).toBe(false);
    expect(twice.detail).toMatch(/not fenced/);
  });

  it('waits until the standby has replayed up to the fenced lsn', async () => {
    const app = await appSession(pair.primary);
    await app.query("INSERT INTO ledger (note) SELECT 'bulk ' || g FROM generate_series(1, 2000) AS g");
    await app.end();
    const fence = await west.dbFenceWrites(SERVICE);
    const lag = await east.dbWaitForLag({ ...SERVICE, sourceLsn: fence.lsn, timeoutMs: 20_000 });
    expect(lag.region).toBe('us-east-1');
    expect(lsnToBigInt(lag.replayedLsn)).toBeGreaterThanOrEqual(lsnToBigInt(fence.lsn));
    expect(lag.initialLagBytes).toBeGreaterThanOrEqual(0);
    const [{ n }] = (await adminQuery<{ n: number }>(pair.standby, 'SELECT count(*)::int AS n FROM ledger')) as [
      { n: number },
    ];
    expect(n).toBe(2002);
    await west.dbUnfenceWrites(SERVICE);
  });

  it('gives up with LagTimeout, saying how many bytes are missing, when the target cannot catch up', async () => {
    const now = (await west.dbDescribe(SERVICE)).lsn!;
    const farAhead = formatLsn(lsnToBigInt(now) + 1_000_000_000n);
    const started = Date.now();
    const timeout = await failure(east.dbWaitForLag({ ...SERVICE, sourceLsn: farAhead, timeoutMs: 300 }));
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(timeout.type).toBe(DbFailure.LagTimeout);
    expect(timeout.nonRetryable).toBe(true);
    expect(timeout.message).toMatch(/still \d+ bytes short/);
    expect(timeout.message).toContain(farAhead);

    const badLsn = await failure(east.dbWaitForLag({ ...SERVICE, sourceLsn: 'latest', timeoutMs: 300 }));
    expect(badLsn.nonRetryable).toBe(true);
  });

  it('heartbeats while it waits, and stops waiting when the activity is cancelled', async () => {
    const farAhead = formatLsn(lsnToBigInt((await west.dbDescribe(SERVICE)).lsn!) + 1_000_000_000n);
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (details: unknown) => {
      beats.push(details);
      if (beats.length === 3) env.cancel();
    });
    const started = Date.now();
    await expect(
      env.run(east.dbWaitForLag, { ...SERVICE, sourceLsn: farAhead, timeoutMs: 60_000 }),
    ).rejects.toBeInstanceOf(CancelledFailure);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(beats[0]).toMatchObject({ missingBytes: expect.any(Number), replayedLsn: expect.any(String) });
  });

  it('performs a planned switchover: fence, wait, promote, rejoin the old primary as a standby', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 20; i++) ids.push(await appWrite(pair.primary, `switchover ${i}`));
    const acknowledged = (await adminQuery<{ id: string }>(pair.primary, 'SELECT id FROM ledger ORDER BY id')).map(
      (r) => Number(r.id),
    );

    const fence = await west.dbFenceWrites(SERVICE);
    expect(fence.verified).toBe(true);
    const lag = await east.dbWaitForLag({ ...SERVICE, sourceLsn: fence.lsn, timeoutMs: 20_000 });
    expect(lsnToBigInt(lag.replayedLsn)).toBeGreaterThanOrEqual(lsnToBigInt(fence.lsn));

    const promote = await east.dbPromote(SERVICE);
    expect(promote).toMatchObject({ region: 'us-east-1', promoted: true, alreadyPrimary: false, timeline: 2 });
    expect(promote.before).toMatchObject({ role: 'standby', reachable: true });
    expect(lsnToBigInt(promote.before.lsn!)).toBeGreaterThanOrEqual(lsnToBigInt(fence.lsn));
    const twice = await east.dbPromote(SERVICE);
    expect(twice).toMatchObject({ promoted: false, alreadyPrimary: true, timeline: 2 });

    // A retried wait after the promotion converges: the new timeline forked after the fenced lsn.
    expect(await east.dbWaitForLag({ ...SERVICE, sourceLsn: fence.lsn, timeoutMs: 1_000 })).toMatchObject({
      initialLagBytes: 0,
    });
    expect(await east.dbVerifyWrites(SERVICE)).toMatchObject({ region: 'us-east-1', ok: true });
    expect(await sqlStateOf(appWrite(pair.standby, 'on the new primary'))).toBe('no error');

    // Compensation must not make a second writer once the target is promoted.
    const refused = await failure(west.dbUnfenceWrites(SERVICE));
    expect(refused.type).toBe(DbFailure.OtherPrimary);
    expect(refused.message).toContain('us-east-1');

    const rejoin = await west.dbRejoinAsStandby({ ...SERVICE, primaryRegion: 'us-east-1' });
    expect(rejoin).toMatchObject({
      region: 'us-west-2',
      rejoined: true,
      streamingFrom: `127.0.0.1:${pair.standby.port}`,
    });
    expect(typeof rejoin.rewound).toBe('boolean');
    expect(await west.dbRejoinAsStandby({ ...SERVICE, primaryRegion: 'us-east-1' })).toMatchObject({
      rejoined: false,
      rewound: false,
    });

    const onNewPrimary = new Set(
      (await adminQuery<{ id: string }>(pair.standby, 'SELECT id FROM ledger')).map((r) => Number(r.id)),
    );
    expect(acknowledged.filter((id) => !onNewPrimary.has(id))).toEqual([]);
    expect(ids.every((id) => onNewPrimary.has(id))).toBe(true);

    const oldPrimary = await west.dbDescribe(SERVICE);
    expect(oldPrimary).toMatchObject({ role: 'standby', streamingFrom: `127.0.0.1:${pair.standby.port}`, timeline: 2 });
    expect(await sqlStateOf(appWrite(pair.primary, 'on the old primary'))).toBe('25006');
    expect((await failure(west.dbVerifyWrites(SERVICE))).type).toBe(DbFailure.NotWritable);

    // Replication now flows the other way.
    const id = await appWrite(pair.standby, 'replicated back');
    await eventually("the new standby has the new primary's write", async () =>
      (await adminQuery(pair.primary, 'SELECT 1 FROM ledger WHERE id = $1', [id])).length === 1 ? true : undefined,
    );
  });

  it('holds against a role setting that turns the read-only default off, and refuses a pg_hba.conf the server cannot load', async () => {
    // us-east-1 is the primary now. A role-level setting that defeated the old read-only fence.
    await adminQuery(pair.standby, 'ALTER ROLE app SET default_transaction_read_only = off');
    try {
      const before = readFileSync(hbaOf(pair.standby), 'utf8');
      expect(await east.dbFenceWrites(SERVICE)).toMatchObject({ verified: true });
      expect(await attemptReadWriteLogin(appTarget(pair.standby))).toBe('login-refused');
      expect(await east.dbUnfenceWrites(SERVICE)).toMatchObject({ unfenced: true });
      expect(readFileSync(hbaOf(pair.standby), 'utf8')).toBe(before);

      // A line the server cannot parse: PostgreSQL keeps its old rules, so the wall would not
      // be in effect. The fence says which line, and the application can still write until fixed.
      writeFileSync(hbaOf(pair.standby), `${before}host all app 127.0.0.1/32 no-such-method\n`);
      const broken = await failure(east.dbFenceWrites(SERVICE));
      expect(broken.type).toBe(DbFailure.Config);
      expect(broken.nonRetryable).toBe(true);
      expect(broken.message).toMatch(/pg_hba\.conf does not parse \(line \d+: .+\)/);
      writeFileSync(hbaOf(pair.standby), before);
      expect(await east.dbUnfenceWrites(SERVICE)).toMatchObject({ unfenced: true });
      expect(readFileSync(hbaOf(pair.standby), 'utf8')).toBe(before);
      expect(await east.dbVerifyWrites(SERVICE)).toMatchObject({ ok: true });
    } finally {
      const admin = new Client({
        host: pair.standby.host,
        port: pair.standby.port,
        user: 'postgres',
        database: 'postgres',
      });
      await admin.connect();
      await admin.query('ALTER ROLE app RESET default_transaction_read_only');
      await admin.end();
    }
  });

  it('reports a stopped or unroutable node as unreachable within seconds, and unfence retries', async () => {
    await stop(pair.bin, pair.primary, 'immediate');
    let started = Date.now();
    const stopped = await west.dbDescribe(SERVICE);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(stopped).toMatchObject({ region: 'us-west-2', reachable: false });
    expect(stopped.error).toContain(String(pair.primary.port));

    started = Date.now();
    const nowhere = await west.dbDescribe({ service: 'orders' });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(nowhere).toMatchObject({ reachable: false });

    const unfence = await failure(west.dbUnfenceWrites(SERVICE));
    expect(unfence.nonRetryable).toBe(false);
    expect(unfence.type).toBe(DbFailure.Unreachable);
  });
});
