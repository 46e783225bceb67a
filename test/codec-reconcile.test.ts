// A real reconciliation with payload encryption on: the ledger diverges (unplanned failover under
// a write load, engineered conflicts), `reconcile` opens cases holding accounts, amounts and both
// versions of rows, and every history in the namespace, read from the server without keys,
// holds none of them; the clients and workers with the key work as before.
import { randomBytes } from 'node:crypto';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AesGcmCodec, ENCODING, KEY_ID_METADATA } from '../src/lib/codec/aes-gcm';
import { parseCodecKeys } from '../src/lib/codec/keys';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { ReconcileCase } from '../src/contract/reconcile';
import type { RunRecord } from '../src/contract/runbook/types';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { buildFollowUpInput, listCases } from '../src/lib/runs/reconcile';
import { createFailoverEnv, type FailoverEnv } from './support/failover-env';
import { expectEngineeredCases, makeDivergence, type DivergenceRun } from './support/divergence';
import { allRawHistories, type RawHistory } from './support/raw-history';

const KEYS = `rec:${randomBytes(32).toString('base64')}`;
// Before the rig: its client and workers take the codec from the environment.
process.env.REGIONSHIFT_CODEC_KEYS = KEYS;
process.env.REGIONSHIFT_CODEC_KEY_ID = 'rec';

let fe: FailoverEnv;
let d: DivergenceRun;
let record: RunRecord;
let cases: ReconcileCase[];
let histories: RawHistory[];

beforeAll(async () => {
  fe = await createFailoverEnv({
    approval: { planned: 'none', unplanned: 'none' },
    allowDataLoss: true,
    rpoBudgetSeconds: 600,
  });
  d = await makeDivergence(fe, { engineered: true });
  const input = await buildFollowUpInput(fe.client, fe.config, loadRunbook(builtinRunbookPath('reconcile')), {
    service: 'ledger',
    requestedBy: 'alice',
    trigger: 'test',
  });
  const started = await startRun(fe.client, input);
  record = await awaitRecord(fe.client, started.workflowId, started.runId);
  await d.load.stop();
  cases = await listCases(fe.client, fe.config, { service: 'ledger', status: 'open' });
  const connection = await Connection.connect({ address: fe.config.temporal.address });
  try {
    histories = await allRawHistories(connection, 'default');
  } finally {
    await connection.close();
  }
}, 300_000);

afterAll(async () => {
  await d?.load.stop();
  await fe?.teardown();
});

describe('reconciliation with payload encryption', () => {
  it('runs as before: the clients and workers with the key read every input and result', () => {
    expect(record.status, record.error).toBe('succeeded');
    expectEngineeredCases(d.engineered!, cases);
  });

  /** What the SDK writes, past the codec, in a local activity's marker: no inputs, no results. */
  const LOCAL_ACTIVITY_MARKER_KEYS = new Set([
    'seq',
    'attempt',
    'activity_id',
    'activity_type',
    'complete_time',
    'backoff',
    'original_schedule_time',
  ]);

  it("no history on the server holds the cases' accounts, amounts or transaction ids", async () => {
    const e = d.engineered!;
    // What the cases hold, read through the codec: the customer data the scan looks for.
    const secrets = [
      'acct-low',
      'acct-003',
      'acct-004',
      'acct-007',
      '"amount":50000',
      e.highValue,
      e.sameId,
      e.overdraft,
    ];
    const readable = JSON.stringify(cases);
    for (const s of secrets) expect(readable, `the cases hold ${s}`).toContain(s);

    const ids = histories.map((h) => h.workflowId);
    expect(ids).toEqual(expect.arrayContaining(['regionshift-ledger']));
    expect(histories.length).toBeGreaterThanOrEqual(3);
    const leaks = histories.flatMap((h) =>
      secrets.filter((s) => h.bytes.includes(s)).map((s) => `${h.workflowId} ${h.runId}: ${s}`),
    );
    expect(leaks).toEqual([]);

    // Search attributes are indexed by the server, so they stay readable: service, regions, mode,
    // step, trigger, and the SDK's patch markers; never customer data.
    const indexed = [...new Set(histories.flatMap((h) => h.indexed))];
    expect(indexed.length).toBeGreaterThan(0);
    for (const sa of indexed)
      expect(sa, sa).toMatch(/^(Regionshift(Service|Source|Target|Mode|Step|Trigger)|TemporalChangeVersion)=/);
    // Every other payload is sealed, and sealed with the key the processes were given.
    const payloads = histories.flatMap((h) => h.payloads);
    const sealed = payloads.filter((p) => Buffer.from(p.metadata?.encoding ?? []).toString() === ENCODING);
    expect(sealed.length).toBeGreaterThan(20);
    const unsealed = histories.flatMap((h) =>
      h.payloads.flatMap((p, i) => {
        const encoding = Buffer.from(p.metadata?.encoding ?? []).toString();
        const data = Buffer.from(p.data ?? []).toString();
        if (encoding === ENCODING) return [];
        // The SDK writes its patch markers itself, past the codec: a patch id of the workflow code.
        if (
          /\.markerRecordedEventAttributes\.details\.patch-data\./.test(h.where[i]!) &&
          Object.keys(JSON.parse(data)).sort().join() === 'deprecated,id'
        )
          return [];
        // Likewise a local activity's marker metadata (which activity, attempt, when); its result is sealed.
        if (
          /\.markerRecordedEventAttributes\.details\.data\./.test(h.where[i]!) &&
          Object.keys(JSON.parse(data)).every((k) => LOCAL_ACTIVITY_MARKER_KEYS.has(k))
        )
          return [];
        return [`${h.workflowId} ${h.where[i]}: ${encoding} ${data.slice(0, 120)}`];
      }),
    );
    expect(unsealed).toEqual([]);
    expect(new Set(sealed.map((p) => Buffer.from(p.metadata![KEY_ID_METADATA]!).toString()))).toEqual(new Set(['rec']));

    // The same bytes, decrypted, are where the customer data is: the scan looked in the right place.
    const decoded = await new AesGcmCodec(parseCodecKeys(KEYS, 'rec')).decode(sealed);
    const plain = Buffer.concat(decoded.map((p) => Buffer.from(p.data ?? [])));
    for (const s of ['acct-low', 'acct-007', e.highValue]) expect(plain.includes(s), s).toBe(true);
  });
});
