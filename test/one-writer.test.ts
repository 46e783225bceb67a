// One writer at every instant (docs/safety.md, invariant 1), proved on real parts: a planned
// failover on a Temporal dev server, a real PostgreSQL primary and streaming standby, Route 53 in
// moto. Clients of the application role write to BOTH regions the whole time, the way a
// misbehaving application would: one plain, and one that asks for read-write on every
// transaction (BEGIN READ WRITE after SET SESSION CHARACTERISTICS ... READ WRITE, as PgJDBC's
// setReadOnly(false) or a pool resetting session state does). A fence that is only a default
// lets the second kind commit on the old primary while the new one takes writes.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dsn, PG_APP_ROLE, psql, type PgNode } from '../src/lib/postgres/node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { abortRun, awaitRecord, startRun } from '../src/lib/runs/client';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { createFailoverEnv, runbookFromText, SERVICE, type FailoverEnv } from './support/failover-env';
import { signerFor } from './support/signing';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';

let fe: FailoverEnv;

beforeAll(async () => {
  fe = await createFailoverEnv();
  await psql(
    fe.pg.bin,
    fe.nodes[WEST]!,
    'CREATE TABLE transfers(id uuid PRIMARY KEY, amount int NOT NULL); GRANT ALL ON transfers TO app;',
  );
});

afterAll(async () => {
  await fe?.teardown();
});

interface Ack {
  id: string;
  region: string;
  client: 'plain' | 'read-write';
  /** When the client saw COMMIT return (one clock for every client: this process's). */
  at: number;
}

/**
 * A client of the application role bound to one region's node: it reconnects whenever its
 * session is ended and keeps writing until told to stop. Only a returned COMMIT counts.
 */
function writer(node: PgNode, kind: Ack['client'], acks: Ack[], stop: () => boolean): Promise<number> {
  return (async () => {
    let attempts = 0;
    let session: Client | undefined;
    while (!stop()) {
      attempts++;
      try {
        if (!session) {
          const s = new Client({ connectionString: dsn(node, PG_APP_ROLE), connectionTimeoutMillis: 1_000 });
          s.on('error', () => undefined); // ended by the server on purpose; the next query says so
          await s.connect();
          session = s;
          if (kind === 'read-write') await session.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE');
        }
        const id = randomUUID();
        if (kind === 'read-write') {
          await session.query('BEGIN READ WRITE');
          await session.query('INSERT INTO transfers(id, amount) VALUES ($1, 1)', [id]);
          await session.query('COMMIT');
        } else {
          await session.query('INSERT INTO transfers(id, amount) VALUES ($1, 1)', [id]);
        }
        acks.push({ id, region: node.region, client: kind, at: performance.now() });
      } catch {
        // Refused, ended or unreachable: not acknowledged. Start over with a new session.
        await session?.end().catch(() => undefined);
        session = undefined;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    await session?.end().catch(() => undefined);
    return attempts;
  })();
}

describe('one writer', () => {
  it("planned failover with clients writing to both regions, plain and BEGIN READ WRITE: the old primary acknowledges nothing after the new one's first write, and every acknowledged write is on the new primary", async () => {
    const acks: Ack[] = [];
    let stopped = false;
    const stop = (): boolean => stopped;
    const clients = [WEST, EAST].flatMap((region) =>
      (['plain', 'read-write'] as const).map((kind) => writer(fe.nodes[region]!, kind, acks, stop)),
    );

    await waitFor('both kinds of client writing to the primary', async () =>
      acks.filter((a) => a.region === WEST && a.client === 'plain').length >= 20 &&
      acks.some((a) => a.region === WEST && a.client === 'read-write')
        ? true
        : undefined,
    );
    const started = await startRun(fe.client, fe.input({ target: EAST }));
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    const afterRun = acks.filter((a) => a.region === EAST).length;
    await waitFor('writes on the new primary after the run', async () =>
      acks.filter((a) => a.region === EAST).length >= afterRun + 20 ? true : undefined,
    );
    stopped = true;
    const attempts = await Promise.all(clients);

    expect(rec.status).toBe('succeeded');
    expect(rec.fence).toMatchObject({ verified: true, alreadyFenced: false });
    const onWest = acks.filter((a) => a.region === WEST);
    const onEast = acks.filter((a) => a.region === EAST);
    expect(onWest.filter((a) => a.client === 'read-write').length).toBeGreaterThan(0);
    expect(onEast.filter((a) => a.client === 'read-write').length).toBeGreaterThan(0);
    // Every client kept trying throughout (refusals included), so silence proves the fence.
    for (const n of attempts) expect(n).toBeGreaterThan(20);
    const lastOld = Math.max(...onWest.map((a) => a.at));
    const firstNew = Math.min(...onEast.map((a) => a.at));
    expect(lastOld).toBeLessThan(firstNew);
    // Nothing the old primary acknowledged was discarded by the rejoin.
    const present = await fe
      .appPool(EAST)
      .query<{ id: string }>('SELECT id FROM transfers WHERE id = ANY($1::uuid[])', [acks.map((a) => a.id)]);
    expect(present.rowCount).toBe(acks.length);
    expect(rec.rejoin?.streamingFrom).toContain(String(fe.nodes[EAST]!.port));
  });

  it('an abort after the fence gives the old primary back exactly as it was: the same pg_hba.conf, writable by the application', async () => {
    // us-east-1 is the writer now (the test above). Hold the run right after the fence.
    const hbaFile = join(fe.nodes[EAST]!.dataDir, 'pg_hba.conf');
    const before = readFileSync(hbaFile, 'utf8');
    const holdAfterFence = runbookFromText(
      [
        'kind: failover',
        'steps:',
        '  - {id: preflight, action: preflight}',
        '  - {id: fence, action: db.fenceWrites}',
        '  - {id: hold, approval: {reason: held by the test}}',
        '  - {id: confirm-lag, action: db.waitForLag}',
        '  - {id: promote, action: db.promote}',
      ].join('\n'),
    );
    const started = await startRun(fe.client, fe.input({ target: WEST }, holdAfterFence));
    await waitFor('the hold after the fence', async () =>
      (await fe.client.workflow.getHandle(runWorkflowId(SERVICE)).query<RunRecord>('progress')).pendingApproval
        ? true
        : undefined,
    );
    expect(readFileSync(hbaFile, 'utf8')).not.toBe(before);
    expect(await fe.isWritable(EAST)).toBe(false);

    await abortRun(fe.client, started.workflowId, { by: 'carol', reason: 'wrong region' }, signerFor('carol'));
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('aborted');
    expect(rec.compensation).toEqual({ undone: [expect.stringContaining(`unfence ${EAST}`)], notUndone: [] });
    expect(readFileSync(hbaFile, 'utf8')).toBe(before);
    expect(await fe.isWritable(EAST)).toBe(true);
  });
});
