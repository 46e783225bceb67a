// Four regions, as the reference design runs them: one writer and three streaming standbys, real
// PostgreSQL and Temporal. After every failover each standby must stream from the new primary
// (db.repointStandbys); one left on the old timeline would serve stale reads for ever and could
// never be promoted safely. Tests run in order on one cluster.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresActivities } from '../activities/db/postgres';
import type { DbNodeState } from '../activities/types';
import { psql, start, stop } from '../src/postgres/node';
import { followWatcherWorkflowId } from '../src/runbook/ids';
import type { RunRecord } from '../src/runbook/types';
import { awaitRecord, startRun } from '../src/runs/client';
import { createFailoverEnv, SERVICE, type FailoverEnv } from './support/failover-env';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EU = 'eu-west-1';
const AP = 'ap-southeast-1';
const REGIONS = [WEST, EAST, EU, AP];

let fe: FailoverEnv;

beforeAll(async () => {
  fe = await createFailoverEnv({ approval: { planned: 'none', unplanned: 'none' }, allowDataLoss: true, rpoBudgetSeconds: 60 }, {}, { regions: REGIONS });
  await psql(fe.pg.bin, fe.nodes[WEST]!, 'CREATE TABLE transfers(id uuid PRIMARY KEY); GRANT ALL ON transfers TO app;');
});

afterAll(async () => {
  await fe?.teardown();
});

async function failover(target: string, mode: 'planned' | 'unplanned' = 'planned'): Promise<RunRecord> {
  const started = await startRun(fe.client, fe.input({ target, mode }));
  return awaitRecord(fe.client, started.workflowId, started.runId);
}

function describe_(region: string): Promise<DbNodeState> {
  return createPostgresActivities(fe.config, region).dbDescribe({ service: SERVICE });
}

/** A write on the primary that every given standby must show: the proof that it follows. */
async function everyStandbyHasWriteOf(primary: string, standbys: string[]): Promise<void> {
  const id = randomUUID();
  await fe.appPool(primary).query('INSERT INTO transfers VALUES ($1)', [id]);
  for (const region of standbys) {
    await waitFor(`${region} replays the write made on ${primary}`, async () =>
      ((await fe.appPool(region).query('SELECT 1 FROM transfers WHERE id = $1', [id])).rowCount === 1 ? true : undefined),
    );
  }
}

/** Each standby streams from the primary, on the primary's timeline. */
async function expectFollowing(primary: string, standbys: string[]): Promise<void> {
  const p = await describe_(primary);
  expect(p).toMatchObject({ role: 'primary', reachable: true });
  for (const region of standbys) {
    expect(await describe_(region), region).toMatchObject({ role: 'standby', streamingFrom: `127.0.0.1:${fe.nodes[primary]!.port}`, timeline: p.timeline });
  }
}

describe('four regions', () => {
  it('planned: every standby follows the new primary, by a reload, and the record shows each region at the end', async () => {
    await everyStandbyHasWriteOf(WEST, [EAST, EU, AP]);
    const rec = await failover(EAST);
    expect(rec.status, rec.error).toBe('succeeded');
    expect(rec.steps.find((s) => s.id === 'repoint-standbys')).toMatchObject({ status: 'done' });
    expect(rec.standbys).toEqual([
      { region: EU, followed: true, how: 'reload' },
      { region: AP, followed: true, how: 'reload' },
    ]);
    await expectFollowing(EAST, [WEST, EU, AP]);
    await everyStandbyHasWriteOf(EAST, [WEST, EU, AP]);
    expect(rec.topologyAfter!.map((n) => [n.region, n.role])).toEqual([[WEST, 'standby'], [EAST, 'primary'], [EU, 'standby'], [AP, 'standby']]);
    for (const n of rec.topologyAfter!.filter((t) => t.role === 'standby')) expect(n.streamingFrom).toBe(`127.0.0.1:${fe.nodes[EAST]!.port}`);
  });

  it('a standby that is down during the failover is re-pointed by its watcher when it returns', async () => {
    await fe.stopRegion(AP);
    await stop(fe.pg.bin, fe.nodes[AP]!, 'fast');
    const rec = await failover(WEST);
    expect(rec.status, rec.error).toBe('succeeded');
    const ap = rec.standbys!.find((s) => s.region === AP)!;
    expect(ap).toMatchObject({ followed: false, watcher: followWatcherWorkflowId(SERVICE, AP) });
    expect(rec.steps.find((s) => s.id === 'repoint-standbys')!.detail).toContain(`${AP} not yet`);
    expect(rec.standbys!.find((s) => s.region === EU)).toMatchObject({ followed: true });
    expect(rec.topologyAfter!.find((n) => n.region === AP)).toMatchObject({ reachable: false });

    // The region comes back: its database (still pointing at the old primary) and its worker.
    await start(fe.pg.bin, fe.nodes[AP]!);
    await fe.startRegion(AP);
    const said = await fe.client.workflow.getHandle(ap.watcher!).result();
    expect(said).toContain(`${AP} follows 127.0.0.1:${fe.nodes[WEST]!.port}`);
    await expectFollowing(WEST, [EAST, EU, AP]);
    await everyStandbyHasWriteOf(WEST, [EAST, EU, AP]);
  });

  it('unplanned: with the writer region dead, every surviving standby follows the promoted one', async () => {
    await fe.stopRegion(WEST);
    await stop(fe.pg.bin, fe.nodes[WEST]!, 'immediate');
    const rec = await failover(EAST, 'unplanned');
    expect(rec.status, rec.error).toBe('succeeded');
    expect(rec.standbys!.map((s) => [s.region, s.followed])).toEqual([[EU, true], [AP, true]]);
    await expectFollowing(EAST, [EU, AP]);
    await everyStandbyHasWriteOf(EAST, [EU, AP]);
    expect(rec.topologyAfter!.find((n) => n.region === WEST)).toMatchObject({ reachable: false });
  });

  it('refuses to make a primary follow another writer: its writes would be discarded unreconciled', async () => {
    const err = await createPostgresActivities(fe.config, EAST).dbFollowWriter({ service: SERVICE }).then(() => undefined, (e: unknown) => e);
    expect((err as Error).message).toMatch(/is a primary, not a standby: .*rejoin it \(dbRejoinAsStandby\) once reconciliation has read its writes/);
  });
});
