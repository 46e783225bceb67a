// Four regions, as the reference design runs them: one writer and three streaming standbys, real
// PostgreSQL and Temporal. After every failover each standby must stream from the new primary
// (db.repointStandbys); one left on the old timeline would serve stale reads for ever and could
// never be promoted safely. Tests run in order on one cluster.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresActivities } from '../activities/db/postgres';
import type { DbNodeState } from '../src/contract/activities';
import { psql, start, stop } from '../src/lib/postgres/node';
import { followWatcherWorkflowId, runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { Deliverer } from '../src/intake/deliver';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import type { AlarmSignal, GuardianView } from '../src/contract/guardian/types';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { createFailoverEnv, partitionStandby, SERVICE, type FailoverEnv } from './support/failover-env';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EU = 'eu-west-1';
const AP = 'ap-southeast-1';
const REGIONS = [WEST, EAST, EU, AP];

let fe: FailoverEnv;

beforeAll(async () => {
  fe = await createFailoverEnv(
    { approval: { planned: 'none', unplanned: 'none' }, allowDataLoss: true, rpoBudgetSeconds: 60, cooldown: '1s' },
    {},
    {
      regions: REGIONS,
      service: {
        triggers: {
          alarms: [{ source: 'alertmanager', name: 'PrimaryDown', regionLabel: 'region' }],
          approval: { unplanned: { policy: 'auto' } },
        },
      },
    },
  );
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
      (await fe.appPool(region).query('SELECT 1 FROM transfers WHERE id = $1', [id])).rowCount === 1 ? true : undefined,
    );
  }
}

/** Each standby streams from the primary, on the primary's timeline. */
async function expectFollowing(primary: string, standbys: string[]): Promise<void> {
  const p = await describe_(primary);
  expect(p).toMatchObject({ role: 'primary', reachable: true });
  for (const region of standbys) {
    expect(await describe_(region), region).toMatchObject({
      role: 'standby',
      streamingFrom: `127.0.0.1:${fe.nodes[primary]!.port}`,
      timeline: p.timeline,
    });
  }
}

describe('four regions', () => {
  it('planned: every standby follows the new primary, and the record shows each region at the end', async () => {
    await everyStandbyHasWriteOf(WEST, [EAST, EU, AP]);
    const rec = await failover(EAST);
    expect(rec.status, rec.error).toBe('succeeded');
    expect(rec.steps.find((s) => s.id === 'repoint-standbys')).toMatchObject({ status: 'done' });
    // By a reload when a standby has received nothing past the new timeline's fork; by pg_rewind
    // when the old primary wrote a record after the fence that the target had not replayed when
    // it was promoted (a standby snapshot, say), which depends on timing. Both end in following.
    expect(rec.standbys).toEqual([
      { region: EU, followed: true, how: expect.stringMatching(/^(reload|rewind)$/) },
      { region: AP, followed: true, how: expect.stringMatching(/^(reload|rewind)$/) },
    ]);
    await expectFollowing(EAST, [WEST, EU, AP]);
    await everyStandbyHasWriteOf(EAST, [WEST, EU, AP]);
    expect(rec.topologyAfter!.map((n) => [n.region, n.role])).toEqual([
      [WEST, 'standby'],
      [EAST, 'primary'],
      [EU, 'standby'],
      [AP, 'standby'],
    ]);
    for (const n of rec.topologyAfter!.filter((t) => t.role === 'standby'))
      expect(n.streamingFrom).toBe(`127.0.0.1:${fe.nodes[EAST]!.port}`);
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
    // It was stopped before the fence, so it cannot be past the fork: a reload is enough.
    expect(said).toBe(`${AP} follows 127.0.0.1:${fe.nodes[WEST]!.port} (reload)`);
    await expectFollowing(WEST, [EAST, EU, AP]);
    await everyStandbyHasWriteOf(WEST, [EAST, EU, AP]);
  });

  it('unplanned: with the writer region dead, every surviving standby follows the promoted one', async () => {
    await fe.stopRegion(WEST);
    await stop(fe.pg.bin, fe.nodes[WEST]!, 'immediate');
    const rec = await failover(EAST, 'unplanned');
    expect(rec.status, rec.error).toBe('succeeded');
    expect(rec.standbys!.map((s) => [s.region, s.followed])).toEqual([
      [EU, true],
      [AP, true],
    ]);
    await expectFollowing(EAST, [EU, AP]);
    await everyStandbyHasWriteOf(EAST, [EU, AP]);
    expect(rec.topologyAfter!.find((n) => n.region === WEST)).toMatchObject({ reachable: false });
  });

  it('refuses to make a primary follow another writer: its writes would be discarded unreconciled', async () => {
    const err = await createPostgresActivities(fe.config, EAST)
      .dbFollowWriter({ service: SERVICE })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((err as Error).message).toMatch(
      /is a primary, not a standby: .*rejoin it \(dbRejoinAsStandby\) once reconciliation has read its writes/,
    );
  });

  it('the guardian fails over to the healthy standby with the least lag, not the next region in the config', async () => {
    // us-east-1 writes. In config order the next candidate is us-west-2 (dead) and then
    // eu-west-1, which stops receiving WAL; ap-southeast-1 keeps up.
    await partitionStandby(fe, EU);
    await everyStandbyHasWriteOf(EAST, [AP]);
    const deliverer = new Deliverer({
      client: fe.client,
      config: fe.config,
      runbook: loadRunbook(builtinRunbookPath('failover')),
    });
    await deliverer.configureAll();
    // Past the policy's cooldown (1 s) after the last run: alarms inside it are held back by design.
    await new Promise((r) => setTimeout(r, 1_500));
    const alarm = (): AlarmSignal => ({
      source: 'alertmanager',
      name: 'PrimaryDown',
      region: EAST,
      severity: 'critical',
      state: 'ALARM',
      at: Date.now(),
      receivedAt: Date.now(),
    });
    await deliverer.deliver(SERVICE, [alarm(), alarm(), alarm()]);
    const started = await waitFor('the guardian to start a failover', async () => {
      const d = await fe.client.workflow.getHandle(runWorkflowId(SERVICE)).describe();
      return d.status.name === 'RUNNING' ? d : undefined;
    }).catch(async (err) => {
      const v = await fe.client.workflow.getHandle(guardianWorkflowId(SERVICE)).query<GuardianView>('state');
      throw new Error(`${(err as Error).message}; the guardian says: ${JSON.stringify(v.decisions)}`);
    });
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec).toMatchObject({
      requestedBy: 'guardian',
      mode: 'unplanned',
      source: EAST,
      target: AP,
      status: 'succeeded',
    });
    const view = await fe.client.workflow.getHandle(guardianWorkflowId(SERVICE)).query<GuardianView>('state');
    expect(view.decisions.map((d) => d.detail)).toContainEqual(
      expect.stringMatching(new RegExp(`^${AP} instead of ${WEST}: ${AP} is a healthy standby with the least lag`)),
    );
    await expectFollowing(AP, [EU]);
  });
});
