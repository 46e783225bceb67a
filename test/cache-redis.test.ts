// A service with PostgreSQL and a Redis cache, both replicated from us-west-2 to us-east-1, moved
// together by the failover runbook (runbooks/failover.yaml, unchanged) through Temporal: real
// PostgreSQL streaming replication, real Redis replication (Debian's redis-server, one per region,
// from src/stack/redis.ts), one worker per region.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RespError, withRedis, type RedisTarget } from '../activities/cache/resp';
import { startReadOnly, stop } from '../src/lib/postgres/node';
import { fenceOnReturnWorkflowId } from '../src/contract/runbook/ids';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { buildFollowUpInput } from '../src/lib/runs/reconcile';
import { ensureRedisServer, redisArgv } from '../src/stack/redis';
import { createFailoverEnv, type FailoverEnv } from './support/failover-env';
import { freePorts } from './support/ports';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
let fe: FailoverEnv;
let dir: string;
const redis: Record<string, { target: RedisTarget; proc: ChildProcess; argv: string[] }> = {};

async function cmd(region: string, ...args: string[]): Promise<unknown> {
  return withRedis(redis[region]!.target, (c) => c.send(args));
}

beforeAll(async () => {
  const bin = await ensureRedisServer();
  dir = mkdtempSync(join(tmpdir(), 'regionshift-redis-'));
  const [west, east] = (await freePorts(2)) as [number, number];
  const ports: Record<string, number> = { [WEST]: west, [EAST]: east };
  for (const region of [WEST, EAST]) {
    const argv = redisArgv(bin, {
      region,
      host: '127.0.0.1',
      port: ports[region]!,
      dir: join(dir, region),
      ...(region === EAST ? { replicaOf: { host: '127.0.0.1', port: west } } : {}),
    });
    redis[region] = {
      target: { host: '127.0.0.1', port: ports[region]! },
      argv,
      proc: spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' }),
    };
  }
  await waitFor(
    "east's Redis replicating from west",
    async () => /master_link_status:up/.test(String(await cmd(EAST, 'INFO', 'replication'))),
    20_000,
  );
  fe = await createFailoverEnv(
    { approval: { planned: 'none', unplanned: 'none' }, allowDataLoss: true, rpoBudgetSeconds: 60 },
    {},
    {
      service: {
        cache: {
          provider: 'redis',
          regions: { [WEST]: { host: '127.0.0.1', port: west }, [EAST]: { host: '127.0.0.1', port: east } },
        },
      },
    },
  );
});

afterAll(async () => {
  await fe?.teardown();
  for (const r of Object.values(redis)) r.proc.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a service with PostgreSQL and Redis', () => {
  it("planned: both move; the old region's Redis refuses writes from the fence on, and every write it acknowledged is on the new primary", async () => {
    // A client writing to the old region's Redis all through the run.
    const acked: string[] = [];
    const refused: string[] = [];
    let writing = true;
    const writer = (async () => {
      await withRedis(redis[WEST]!.target, async (c) => {
        for (let i = 0; writing; i++) {
          const r = await c.send(['SET', `session:${i}`, String(i)]);
          if (r instanceof RespError) refused.push(r.message);
          else acked.push(`session:${i}`);
          // Paced: a session store's rate, not a benchmark's.
          await new Promise((r) => setTimeout(r, 2));
        }
      });
    })();
    const started = await startRun(fe.client, fe.input({ target: EAST }));
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    writing = false;
    await writer;
    if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
    expect(rec.status).toBe('succeeded');
    expect(rec.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'preflight',
      'fence',
      'fence-cache',
      'confirm-lag',
      'promote',
      'promote-cache',
      'shift-traffic',
      'verify',
      'repoint-cache',
      'rejoin',
    ]);
    expect(rec.cache!.fence).toMatchObject({ region: WEST, verified: true, alreadyFenced: false });
    expect(rec.cache!.fence!.detail).toContain('NOREPLICAS');
    expect(rec.cache!.promotion).toMatchObject({ region: EAST, promoted: true });
    expect(rec.cache!.repoint!.regions).toEqual([expect.objectContaining({ region: WEST, following: true })]);

    // The writer met the fence: refused, never hung, and nothing acknowledged was lost.
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]).toMatch(/^NOREPLICAS/);
    expect(acked.length).toBeGreaterThan(0);
    const onEast = await withRedis(redis[EAST]!.target, (c) => c.call('EXISTS', ...acked));
    expect(onEast).toBe(acked.length);

    // Both stores write in east only; west's Redis follows east's, and its fence is gone with its role.
    expect(await fe.isWritable(EAST)).toBe(true);
    expect(await fe.isWritable(WEST)).toBe(false);
    expect(await cmd(WEST, 'SET', 'after', '1')).toMatchObject({ code: 'READONLY' });
    expect(await cmd(EAST, 'SET', 'after', '1')).toBe('OK');
    await waitFor("west's Redis replaying east's write", async () => (await cmd(WEST, 'GET', 'after')) === '1', 20_000);
    expect(await cmd(WEST, 'CONFIG', 'GET', 'min-replicas-to-write')).toEqual(['min-replicas-to-write', '0']);
  });

  it("unplanned with the old region's Redis dead: the target's Redis is promoted, the dead one recorded, not waited on", async () => {
    // East writes now; it dies: its Redis, its database and its worker.
    redis[EAST]!.proc.kill('SIGKILL');
    await fe.stopRegion(EAST);
    await stop(fe.pg.bin, fe.nodes[EAST]!, 'immediate');
    const started = await startRun(fe.client, fe.input({ target: WEST, mode: 'unplanned' }));
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
    expect(rec.status).toBe('succeeded');
    expect(rec.source).toBe(EAST);
    expect(rec.cache!.fence).toMatchObject({ region: EAST, verified: false });
    expect(rec.steps.find((s) => s.id === 'fence-cache')!.detail).toContain('carried on (onFailure: continue)');
    expect(rec.cache!.promotion).toMatchObject({ region: WEST, promoted: true });
    expect(rec.cache!.promotion!.detail).toContain('unplanned');
    expect(rec.cache!.repoint!.regions).toEqual([expect.objectContaining({ region: EAST, following: false })]);
    expect(rec.cache!.repoint!.regions[0]!.detail).toContain('not re-pointed');
    expect(await cmd(WEST, 'SET', 'after-unplanned', '1')).toBe('OK');
    expect(await fe.isWritable(WEST)).toBe(true);
  });

  it("the old primary's Redis comes back a writer and is made to follow the current primary on return; failback checks it follows before anything moves, then moves the cache back with the database", async () => {
    // East returns: its Redis from its own redis.conf, where the promotion wrote that it leads,
    // so it is a writer again and takes a write the current primary never sees.
    redis[EAST]!.proc = spawn(redis[EAST]!.argv[0]!, redis[EAST]!.argv.slice(1), { stdio: 'ignore' });
    await waitFor(
      "east's Redis answering",
      async () => (await cmd(EAST, 'PING').catch(() => undefined)) === 'PONG',
      20_000,
    );
    expect(String(await cmd(EAST, 'INFO', 'replication'))).toContain('role:master');
    expect(await cmd(EAST, 'SET', 'stale:east', '1')).toBe('OK');
    // Its database comes back read-only on its own timeline (as reconciliation starts it), then its
    // worker: the unplanned run's fence-on-return watcher fences the database and re-points the cache.
    await startReadOnly(fe.pg.bin, fe.nodes[EAST]!);
    await fe.startRegion(EAST);
    const watcher = await fe.client.workflow.getHandle(fenceOnReturnWorkflowId('ledger', EAST)).result();
    expect(watcher).toContain(`its cache: REPLICAOF 127.0.0.1:${redis[WEST]!.target.port} (was a primary)`);
    expect(await cmd(EAST, 'SET', 'stale:east', '2')).toMatchObject({ code: 'READONLY' });
    await waitFor(
      "east's Redis synced from west",
      async () => /master_link_status:up/.test(String(await cmd(EAST, 'INFO', 'replication'))),
      20_000,
    );
    expect(await cmd(EAST, 'GET', 'stale:east')).toBe(null);
    const written = Array.from({ length: 50 }, (_, i) => `west:${i}`);
    await withRedis(redis[WEST]!.target, async (c) => {
      for (const k of written) await c.call('SET', k, k);
    });

    // No reconciliation ran in this file: the failback is overridden, and says so.
    const input = await buildFollowUpInput(fe.client, fe.config, loadRunbook(builtinRunbookPath('failback')), {
      service: 'ledger',
      requestedBy: 'alice',
      trigger: 'test',
      overrideReason: 'cache test: no ledger to reconcile',
    });
    expect(input.cache).toBe(true);
    const started = await startRun(fe.client, input);
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
    expect(rec.status).toBe('succeeded');
    expect([rec.source, rec.target]).toEqual([WEST, EAST]);
    const done = rec.steps.filter((s) => s.status === 'done');
    expect(done.map((s) => s.id)).toEqual([
      'check-reconciliation',
      'preflight',
      'rejoin-old-primary',
      'rejoin-old-cache',
      'fence',
      'fence-cache',
      'confirm-lag',
      'promote',
      'promote-cache',
      'restore-traffic',
      'verify',
      'repoint-cache',
      'rejoin',
    ]);
    // The failback found east's Redis following west's (the watcher's doing) before it fenced anything.
    expect(rec.cache!.rejoin!.regions).toEqual([
      { region: EAST, following: true, detail: `already a replica of 127.0.0.1:${redis[WEST]!.target.port}` },
    ]);
    expect(rec.cache!.fence).toMatchObject({ region: WEST, verified: true });
    // A planned promotion: east had west's fenced offset before it was promoted.
    expect(rec.cache!.promotion).toMatchObject({ region: EAST, promoted: true });
    expect(rec.cache!.promotion!.detail).toContain(`fenced primary: ${rec.cache!.fence!.offset}`);
    expect(rec.cache!.repoint!.regions).toEqual([expect.objectContaining({ region: WEST, following: true })]);

    // East writes again, with what west had; west follows it.
    expect(await withRedis(redis[EAST]!.target, (c) => c.call('EXISTS', ...written))).toBe(written.length);
    expect(await cmd(EAST, 'SET', 'after-failback', '1')).toBe('OK');
    expect(await cmd(WEST, 'SET', 'after-failback', '2')).toMatchObject({ code: 'READONLY' });
    await waitFor(
      "west's Redis replaying east's write",
      async () => (await cmd(WEST, 'GET', 'after-failback')) === '1',
      20_000,
    );
    expect(await fe.isWritable(EAST)).toBe(true);
    expect(await fe.isWritable(WEST)).toBe(false);
  });
});
