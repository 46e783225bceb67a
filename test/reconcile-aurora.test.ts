// Reconciliation of an aurora-global service on real parts: the Temporal dev server, one worker per
// region, moto for the RDS clusters, snapshots, restore and instances (behind
// test/support/rds-restore.ts, which adds what a restored cluster is in AWS and moto does not
// model), rds-sim for the global database moto lacks, and real PostgreSQL standing in for each
// cluster's writer endpoint and for the restored cluster.
//
// The divergence is real: the demo ledger under a write load, replication cut, the primary killed
// and an unplanned failover to us-east-1 with engineered conflicts on both sides (support/divergence.ts,
// on the PostgreSQL pair standing in for the two clusters: the promoted secondary has what it had
// replicated, the old primary what it had not, as after Aurora's FailoverGlobalCluster). The
// reconciliation gets the handoff an Aurora failover records: the failure time and the replication
// lag observed before promotion (the failover side of that is in aws-failover-managed.test.ts).
// When the old region is back, Aurora snapshots the old primary and rebuilds it as a secondary of
// the new one, which overwrites its divergent writes: reconciliation has to read them from the
// snapshot, restored as a read-only cluster.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeDBClustersCommand } from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionActivities } from '../activities';
import { ensureTrafficRecords } from '../activities/traffic/route53';
import type { TrafficState } from '../src/contract/activities';
import { Config } from '../src/lib/config/schema';
import { DEMO_RECONCILE } from '../src/demo/ledger';
import { psql, rejoinAsStandby, PG_APP_ROLE, PG_SUPERUSER } from '../src/lib/postgres/node';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { RunRecord } from '../src/contract/runbook/types';
import type { ReconcileCase, ReconcileHandoff } from '../src/contract/reconcile';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { buildFollowUpInput, handoffOf, listCases, resolveCase } from '../src/lib/runs/reconcile';
import { createRestorableClustersOnMoto, rdsOn } from './support/aurora-moto';
import {
  badBalances,
  EAST,
  expectEngineeredCases,
  journalHas,
  makeDivergence,
  sql,
  WEST,
  type DivergenceRun,
} from './support/divergence';
import { createFailoverEnv, type FailoverEnv } from './support/failover-env';
import { startRdsSim, type RdsSim } from './support/rds-sim';
import { startRestoreFront, type RestoreFront } from './support/rds-restore';
import { waitFor } from './support/wait';
import { approverEntries, signerFor } from './support/signing';

const SVC = 'ledger-aurora';
const GLOBAL = 'ledger-aurora-global';
const CLUSTER = { [WEST]: 'ledger-aurora-west', [EAST]: 'ledger-aurora-east' } as Record<string, string>;

let fe: FailoverEnv;
let d: DivergenceRun;
let sim: RdsSim;
let front: RestoreFront;
let handoff: ReconcileHandoff;
let trafficBefore: TrafficState;
/** What the preserve step said while Aurora had not taken its snapshot yet. */
let waiting: string;
let first: RunRecord;
let cases: ReconcileCase[];

/** An aurora-global service over the PostgreSQL pair; `over` replaces parts of its database block. */
function auroraService(name: string, over: Record<string, unknown> = {}, withSql = true): Record<string, unknown> {
  const member = (region: string) => ({
    clusterIdentifier: CLUSTER[region],
    ...(withSql
      ? {
          writerEndpoint: fe.nodes[region]!.host,
          port: fe.nodes[region]!.port,
          adminUser: PG_SUPERUSER,
          appUser: PG_APP_ROLE,
        }
      : {}),
  });
  return {
    name,
    regions: [WEST, EAST],
    database: {
      provider: 'aurora-global',
      globalClusterIdentifier: GLOBAL,
      regions: { [WEST]: member(WEST), [EAST]: member(EAST) },
      lagMetricPeriodSeconds: 1,
      endpointUrl: front.url,
      ...over,
    },
    traffic: {
      provider: 'route53',
      hostedZone: 'regionshift.test.',
      recordName: `${name}.regionshift.test.`,
      ttl: 5,
      endpoints: { [WEST]: `${name}.${WEST}.regionshift.test.`, [EAST]: `${name}.${EAST}.regionshift.test.` },
      endpointUrl: fe.moto.url,
    },
    // carol decides its cases, signing with her key.
    policy: {
      lagTimeout: '20s',
      approval: { planned: 'none', unplanned: 'none' },
      approvers: approverEntries('carol'),
    },
    // Short margins: the window then leaves most of the table out, which the test checks.
    reconcile: { ...DEMO_RECONCILE, windowMarginSeconds: 1, lagMarginSeconds: 2 },
  };
}

async function start(
  kind: 'reconcile' | 'failback',
  service = SVC,
  overrideReason?: string,
): Promise<{ workflowId: string; runId: string }> {
  const input = await buildFollowUpInput(fe.client, fe.config, loadRunbook(builtinRunbookPath(kind)), {
    service,
    requestedBy: 'alice',
    trigger: 'test',
    handoff,
    ...(overrideReason ? { overrideReason } : {}),
  });
  return startRun(fe.client, input);
}

async function run(kind: 'reconcile' | 'failback', service = SVC, overrideReason?: string): Promise<RunRecord> {
  const started = await start(kind, service, overrideReason);
  return awaitRecord(fe.client, started.workflowId, started.runId);
}

/** A session on a PostgreSQL server by address (the restored cluster's endpoint). */
async function query(
  target: { host: string; port: number },
  user: string,
  text: string,
  params: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  const c = new PgClient({ host: target.host, port: target.port, user, database: 'postgres' });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return (await c.query(text, params)).rows as Record<string, unknown>[];
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function sqlState(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (err: { code?: string }) => err.code ?? String(err),
  );
}

/**
 * Aurora's switchover (failback) as the stand-ins see it: the secondary is synchronized first
 * (RPO 0), then it becomes the writer and the old writer its replica.
 */
async function moveStandIns({ kind, from, to }: { kind: string; from: string; to: string }): Promise<void> {
  const regionOf = (cluster: string) => Object.entries(CLUSTER).find(([, id]) => id === cluster)![0];
  const oldWriter = fe.nodes[regionOf(from)]!;
  const newWriter = fe.nodes[regionOf(to)]!;
  if (kind === 'switchover') {
    const lsn = (await psql(fe.pg.bin, oldWriter, 'SELECT pg_current_wal_lsn()')).trim();
    await waitFor(
      'the secondary to replay the writer',
      async () =>
        (await psql(fe.pg.bin, newWriter, `SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn`)).trim() === 't',
    );
  }
  await psql(fe.pg.bin, newWriter, 'SELECT pg_promote(true, 60)');
  await rejoinAsStandby(fe.pg.bin, oldWriter, newWriter);
}

beforeAll(async () => {
  fe = await createFailoverEnv(
    { approval: { planned: 'none', unplanned: 'none' }, allowDataLoss: true, rpoBudgetSeconds: 600 },
    { aurora: { pollMs: 200 } },
  );
  // The global database as Aurora's failover leaves it: us-east-1 the writer, us-west-2 listed as
  // its secondary (Aurora rebuilds the old primary as one once its region is back).
  sim = await startRdsSim({
    globalId: GLOBAL,
    writer: CLUSTER[EAST],
    phaseMs: 300,
    onWriterChange: moveStandIns,
    clusters: [
      { id: CLUSTER[WEST]!, region: WEST, engineVersion: '15.4', instances: 1 },
      { id: CLUSTER[EAST]!, region: EAST, engineVersion: '15.4', instances: 1 },
    ],
  });
  front = await startRestoreFront({
    motoUrl: fe.moto.url,
    sim,
    pgBin: fe.pg.bin,
    dir: mkdtempSync(join(tmpdir(), 'regionshift-restore-')),
  });
  await createRestorableClustersOnMoto(fe.moto.url, [
    { id: CLUSTER[WEST]!, region: WEST },
    { id: CLUSTER[EAST]!, region: EAST },
  ]);

  d = await makeDivergence(fe, { engineered: true });
  const services = Config.parse({
    services: [
      auroraService(SVC),
      auroraService('ledger-mysql', { engine: 'aurora-mysql' }, false),
      auroraService('ledger-nosql', {}, false),
    ],
  }).services;
  // The workers were built on this very config object and look services up when they run.
  fe.config.services.push(...services);
  await ensureTrafficRecords(fe.config, SVC, WEST);
  const east = createRegionActivities(fe.config, EAST);
  trafficBefore = await east.trafficDescribe({ service: SVC });
  await east.trafficShift({ service: SVC, from: WEST, to: EAST });
  // The failover's record as the reconcile.handoff step writes it for Aurora: the failure time
  // and the lag observed then (the secondary was behind by everything since replication was cut).
  handoff = handoffOf({
    ...d.failover,
    runId: `aurora-${d.failover.runId}`,
    service: SVC,
    promotion: undefined,
    traffic: undefined,
    trafficBefore,
    reconcile: {
      required: true,
      oldPrimary: WEST,
      divergence: {
        failedAt: new Date(d.killedAt).toISOString(),
        lagMs: d.killedAt - d.cutAt,
        lagObservedAt: new Date(d.killedAt).toISOString(),
      },
    },
  });

  // Reconciliation starts before Aurora has snapshotted the old primary.
  const started = await start('reconcile');
  const handle = fe.client.workflow.getHandle(started.workflowId, started.runId);
  waiting = await waitFor(
    'the preserve step to say what it waits for',
    async () => {
      const detail = (await handle.query<RunRecord>('progress')).steps.find((s) => s.id === 'preserve')?.detail;
      return detail?.startsWith('waiting') ? detail : undefined;
    },
    60_000,
    200,
  );
  // The old region is back: Aurora snapshots the old primary, then rebuilds it as a secondary of
  // the new writer, which overwrites its divergent writes.
  await front.snapshotOldPrimary(WEST, CLUSTER[WEST]!, fe.nodes[WEST]!.dataDir);
  await rejoinAsStandby(fe.pg.bin, fe.nodes[WEST]!, fe.nodes[EAST]!);
  first = await awaitRecord(fe.client, started.workflowId, started.runId);
  await d.load.stop();
  cases = await listCases(fe.client, fe.config, { service: SVC, status: 'open' });
}, 300_000);

afterAll(async () => {
  await d?.load.stop();
  await front?.close();
  await sim?.close();
  await fe?.teardown();
});

describe('reconcile an aurora-global service', () => {
  it("waits for Aurora's snapshot while saying so, then restores its copy as a read-only cluster with the old primary's data", async () => {
    expect(waiting).toMatch(
      /^waiting \(\d+s so far\): no rds:unplanned-global-failover-ledger-aurora-west-… snapshot of .* yet/,
    );
    expect(first.status, first.error).toBe('succeeded');
    expect(first.steps.map((s) => [s.id, s.status])).toEqual([
      ['preserve', 'done'],
      ['classify', 'done'],
      ['apply', 'done'],
      ['verify', 'done'],
      ['report', 'done'],
    ]);
    const p = first.reconciliation!.preserve!;
    expect(p).toMatchObject({ region: WEST, state: 'restored-read-only-cluster', started: true, fenced: true });
    expect(p.snapshot!.source).toMatch(/^rds:unplanned-global-failover-ledger-aurora-west-/);
    expect(p.snapshot!.copy).toMatch(/^regionshift-preserved-ledger-aurora-west-\d{12}$/);
    const side = p.oldSide!;
    expect(side).toMatchObject({
      region: WEST,
      cluster: p.snapshot!.copy,
      instance: `${p.snapshot!.copy}-r1`,
      snapshot: p.snapshot!.copy,
      database: 'postgres',
    });

    // As the RDS API lists it: available, its writer endpoint the instance's server.
    const listed = (
      await rdsOn(front.url, WEST).send(new DescribeDBClustersCommand({ DBClusterIdentifier: side.cluster }))
    ).DBClusters![0]!;
    expect(listed).toMatchObject({ Status: 'available', Endpoint: side.host, Port: side.port });
    expect(listed.DBClusterMembers!.map((m) => m.DBInstanceIdentifier)).toEqual([side.instance]);
    // Copied once, restored once, one instance, created only once the cluster was available.
    const ok = (action: string) => front.log.filter((l) => l.action === action && l.status === 200);
    expect([
      front.accepted('CopyDBClusterSnapshot'),
      front.accepted('RestoreDBClusterFromSnapshot'),
      front.accepted('CreateDBInstance'),
    ]).toEqual([1, 1, 1]);
    expect(ok('RestoreDBClusterFromSnapshot')[0]!.params).toMatchObject({
      SnapshotIdentifier: side.snapshot,
      DBClusterIdentifier: side.cluster,
      Engine: 'aurora-postgresql',
    });
    expect(front.log.findIndex((l) => l.action === 'CreateDBInstance')).toBeGreaterThan(
      front.log.findIndex((l) => l.action === 'RestoreDBClusterFromSnapshot'),
    );
    // It waited for each to be available (they are creating for a while) and never asked too early.
    expect(front.log.filter((l) => l.action === 'CreateDBInstance').map((l) => l.status)).toEqual([200]);
    expect(
      front.log.filter((l) => l.action === 'DescribeDBInstances' && l.params.DBInstanceIdentifier === side.instance)
        .length,
    ).toBeGreaterThan(1);

    // Real data: the old primary's divergent writes are in the restored cluster, while the old
    // primary itself, rebuilt as a secondary, no longer has them.
    const od = d.engineered!.overdraft;
    expect(await query(side, PG_SUPERUSER, 'SELECT count(*)::int AS n FROM journal WHERE id = $1', [od])).toEqual([
      { n: 1 },
    ]);
    expect(await sql(fe, WEST, 'SELECT count(*)::int AS n FROM journal WHERE id = $1', [od])).toEqual([{ n: 0 }]);
    // Read-only in the database: a write is refused as the application role, and as the admin too.
    expect(
      await sqlState(
        query(
          side,
          PG_APP_ROLE,
          "INSERT INTO journal (id, origin_region, keys, payload_hash) VALUES (gen_random_uuid(), 'x', '{}', 'x')",
        ),
      ),
    ).toBe('25006');
    expect(
      await sqlState(query(side, PG_SUPERUSER, "UPDATE accounts SET balance = balance + 1 WHERE id = 'acct-001'")),
    ).toBe('25006');
    expect(p.detail).toContain(`a write as ${PG_APP_ROLE} was refused as read-only`);
  });

  it('dates the window by the failure time minus the lag observed, and reads only the window', async () => {
    const c = first.reconciliation!.classify!;
    expect(c.divergence.basis).toMatch(
      /^Aurora: failure time \S+ minus the replication lag observed before promotion \(\d+ ms\) minus 2s lag margin and 1s window margin$/,
    );
    expect(c.divergence).toMatchObject({ lagMs: d.killedAt - d.cutAt, failedAt: new Date(d.killedAt).toISOString() });
    expect(Date.parse(c.divergence.windowFrom)).toBe(d.cutAt - 3_000);
    // No timelines or WAL positions on Aurora.
    expect(c.divergence.newTimeline).toBeUndefined();
    expect(c.divergence.oldTimeline).toBeUndefined();
    const oldTotal = (
      await query(first.reconciliation!.preserve!.oldSide!, PG_SUPERUSER, 'SELECT count(*)::int AS n FROM journal')
    )[0]!.n as number;
    expect(c.read.oldRows, 'the window, not the table').toBeLessThan(oldTotal);
    const rep = first.reconciliation!.report!;
    expect(rep.txn['only-old'], 'the writes us-west-2 acknowledged after replication was cut').toBeGreaterThan(10);
    expect(rep.txn['same-id-different-payload']).toBe(1);
    expect(rep.txn.identical).toBe(1);
    expect(rep.applied.duplicatesDropped).toBe(1);
    // The transaction that began five minutes before the failure is outside the window: verify
    // found it just before it, and a second pass took it in.
    expect(rep.passes).toBe(2);
    expect(first.steps.find((s) => s.id === 'verify')!.detail).toMatch(
      /widened to .*pass 2: 1 more re-applied.*no difference outside the window/,
    );
    expect(rep.verify).toMatchObject({ ok: true, differences: 0, balanceMismatches: 0 });
  });

  it('re-applies every lost transaction exactly once and turns the engineered conflicts into cases', async () => {
    const e = d.engineered!;
    expectEngineeredCases(e, cases);
    expect(cases.every((k) => k.service === SVC)).toBe(true);

    const acked = d.acked();
    const ids = [...new Set(acked.map((a) => a.id))];
    const present = await journalHas(fe, EAST, ids);
    const inCase = new Set(cases.flatMap((k) => k.txnIds));
    expect(
      ids.filter((id) => !present.has(id) && !inCase.has(id)),
      'acknowledged, neither in us-east-1 nor in a case',
    ).toEqual([]);
    // Exactly once: a transfer has its two entries, never four.
    expect([...present.values()].every((n) => n === 0 || n === 2)).toBe(true);
    expect(acked.filter((a) => a.region === WEST && !inCase.has(a.id)).every((a) => present.has(a.id))).toBe(true);
    const prov = await sql<{ n: number }>(
      fe,
      EAST,
      'SELECT count(*)::int AS n FROM regionshift.reconcile_provenance p JOIN journal j ON j.id = p.txn_id WHERE j.origin_region = $1',
      [WEST],
    );
    expect(prov[0]!.n).toBeGreaterThanOrEqual(first.reconciliation!.report!.applied.transactions);
    expect(await badBalances(fe, EAST)).toEqual([]);
    expect(await sql(fe, EAST, 'SELECT id FROM accounts WHERE balance < 0')).toEqual([]);
  });

  it('reports the restored cluster and the exact commands that delete it', () => {
    const rep = first.reconciliation!.report!;
    const side = first.reconciliation!.preserve!.oldSide!;
    expect(rep.oldSide).toEqual({
      region: WEST,
      cluster: side.cluster,
      instance: side.instance,
      snapshot: side.snapshot,
      deleteCommands: [
        `aws rds delete-db-instance --region ${WEST} --db-instance-identifier ${side.instance}`,
        `aws rds wait db-instance-deleted --region ${WEST} --db-instance-identifier ${side.instance}`,
        `aws rds delete-db-cluster --region ${WEST} --db-cluster-identifier ${side.cluster} --skip-final-snapshot`,
      ],
    });
    expect(first.steps.find((s) => s.id === 'report')!.detail).toContain(
      `aws rds delete-db-instance --region ${WEST} --db-instance-identifier ${side.instance} && `,
    );
  });

  it('a second run finds the restored cluster and the applied passes, and changes nothing', async () => {
    const count = async () =>
      (
        await sql<{ j: string; e: string }>(
          fe,
          EAST,
          'SELECT (SELECT count(*) FROM journal) AS j, (SELECT count(*) FROM ledger_entries) AS e',
        )
      )[0];
    const before = await count();
    const again = await run('reconcile');
    expect(again.status, again.error).toBe('succeeded');
    expect(again.reconciliation!.preserve).toMatchObject({
      started: false,
      fenced: false,
      oldSide: first.reconciliation!.preserve!.oldSide,
    });
    expect(again.reconciliation!.classify!.alreadyApplied).toBe(true);
    expect(again.reconciliation!.apply!.alreadyApplied).toBe(true);
    const a = again.reconciliation!.report!;
    const b = first.reconciliation!.report!;
    expect({ txn: a.txn, rows: a.rows, applied: a.applied, cases: a.cases.opened }).toEqual({
      txn: b.txn,
      rows: b.rows,
      applied: b.applied,
      cases: b.cases.opened,
    });
    expect(await count()).toEqual(before);
    expect([
      front.accepted('CopyDBClusterSnapshot'),
      front.accepted('RestoreDBClusterFromSnapshot'),
      front.accepted('CreateDBInstance'),
    ]).toEqual([1, 1, 1]);
  });

  it('refuses what it cannot reconcile, saying what and where, before restoring anything', async () => {
    const restores = front.accepted('RestoreDBClusterFromSnapshot');
    const mysql = await run('reconcile', 'ledger-mysql');
    expect(mysql.status).toBe('failed');
    expect(mysql.steps.find((s) => s.id === 'preserve')).toMatchObject({ status: 'failed' });
    expect(mysql.error).toMatch(
      /ledger-mysql runs aurora-mysql: regionshift reconciles by SQL on aurora-postgresql only/,
    );
    expect(mysql.error).toContain('aws rds restore-db-cluster-from-snapshot');

    const noSql = await run('reconcile', 'ledger-nosql');
    expect(noSql.status).toBe('failed');
    expect(noSql.error).toContain(`services[ledger-nosql].database.regions.${EAST}.writerEndpoint is not set`);
    expect(noSql.error).toContain(
      `aws rds describe-db-clusters --region ${EAST} --db-cluster-identifier ${CLUSTER[EAST]}`,
    );
    expect(front.accepted('RestoreDBClusterFromSnapshot')).toBe(restores);

    // The old side of an Aurora reconciliation is only ever the restored cluster.
    const classify = createRegionActivities(fe.config, EAST).reconcileClassify({
      service: SVC,
      reconciliationId: 'rc-test',
      oldRegion: WEST,
      pass: 1,
      requestedBy: 'test',
      workflowRunId: 'test',
    });
    const err = await classify.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    expect((err as ApplicationFailure).message).toContain('no restored cluster was passed: run the reconcile runbook');
  });

  it('fails back: refused while cases are open, then with a recorded override switches over to us-west-2 with no loss', async () => {
    const refused = await run('failback');
    expect(refused.status).toBe('failed');
    expect(refused.steps.find((s) => s.id === 'check-reconciliation')!.error).toContain(
      `${cases.length} reconciliation case(s) open`,
    );
    expect(refused.steps.filter((s) => s.status === 'done')).toEqual([]);

    // A case decided through the cases workflow, which finds the Aurora writer by the RDS API.
    const od = cases.find((k) => k.kind === 'overdraft')!;
    const resolved = await resolveCase(
      fe.client,
      fe.config,
      { service: SVC, caseId: od.id, by: 'carol', action: 'compensate', note: 'recover from the customer' },
      signerFor('carol'),
    );
    expect(resolved).toMatchObject({ changed: true, case: { status: 'resolved', resolution: 'compensate' } });
    expect(await badBalances(fe, EAST)).toEqual([]);

    // Aurora reports the secondary in us-west-2 caught up.
    sim.setLag(CLUSTER[WEST]!, 0);
    const back = await run('failback', SVC, 'the remaining cases are with finance');
    expect(back.status, back.error).toBe('succeeded');
    expect(back.failback!.override).toEqual({ by: 'alice', reason: 'the remaining cases are with finance' });
    expect(back.failback!.oldPrimaryRejoin!.detail).toContain('Aurora demoted it');
    expect(back.promotion).toMatchObject({ region: WEST, method: 'switchover', promoted: true });
    expect(back.rpo).toMatchObject({ zeroLoss: true });
    expect(sim.writer()).toBe(CLUSTER[WEST]);
    expect(back.failback!.trafficRestored!.after.records.map((r) => [r.region, r.weight])).toEqual(
      trafficBefore.records.map((r) => [r.region, r.weight]),
    );
    // The stand-ins followed: us-west-2 writes (the failback lifted the fence that replicated to
    // it), us-east-1 is its replica.
    expect(await sql(fe, WEST, 'SELECT pg_is_in_recovery() AS rec')).toEqual([{ rec: false }]);
    expect(await sql(fe, EAST, 'SELECT pg_is_in_recovery() AS rec')).toEqual([{ rec: true }]);
    expect(back.verify).toMatchObject({ ok: true });
  });
});
