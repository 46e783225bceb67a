// The intake's alarm journal, with real guardians on the Temporal dev server: an alarm is
// acknowledged once it is fsync'd, forwarded in order, and replayed after a crash without being
// counted twice; while the guardians cannot be reached alarms are still accepted (up to a limit,
// then 503) and are forwarded by the next process; a damaged or locked file is reported, not lost.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Deliverer } from '../src/intake/deliver';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import { AlarmJournal } from '../src/intake/journal';
import { startIntakeServer } from '../src/intake/server';
import type { AlarmSignal, GuardianView } from '../src/contract/guardian/types';
import { LockBusyError } from '../src/stack/pid-lock';
import { runbookFromText } from './support/failover-env';
import { freePort } from './support/ports';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const GATE = runbookFromText(
  'kind: failover\nsteps:\n  - {id: approval, approval: {reason: policy asks a person to approve this failover}, when: [approval-required]}\n',
);
const TOKEN = 'journal-test-token';

let te: TemporalEnv;
let deliverer: Deliverer;
let dir: string;
const logs: string[] = [];
const log = (line: string) => logs.push(line);

beforeAll(async () => {
  te = await createTemporalEnv((address) =>
    paperConfig(address, [
      {
        name: 'replayed',
        regions: [WEST, EAST],
        triggers: {
          alarms: [{ source: 'alertmanager', name: 'PrimaryDown', regionLabel: 'region' }],
          approval: { unplanned: { policy: 'approve' } },
        },
      },
      {
        name: 'offline',
        regions: [WEST, EAST],
        triggers: {
          alarms: [{ source: 'alertmanager', name: 'PrimaryDown', regionLabel: 'region' }],
          approval: { unplanned: { policy: 'approve' } },
        },
      },
    ]),
  );
  deliverer = new Deliverer({ client: te.client, config: te.config, runbook: GATE });
  await deliverer.configureAll();
  dir = mkdtempSync(join(tmpdir(), 'regionshift-journal-test-'));
});

afterAll(async () => {
  await te?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function alarm(name: string, region = WEST): AlarmSignal {
  const now = Date.now();
  return { source: 'alertmanager', name, region, severity: 'critical', state: 'ALARM', at: now, receivedAt: now };
}

async function view(service: string): Promise<GuardianView> {
  return te.client.workflow.getHandle(guardianWorkflowId(service)).query<GuardianView>('state');
}

/** The journal's records (a damaged line, which the journal skips, is skipped here too). */
function lines(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

describe('alarm journal', () => {
  it('forwards in order, and a replay after a crash is not counted twice toward debounce', async () => {
    const path = join(dir, 'replayed.jsonl');
    const j1 = await AlarmJournal.open({ path, forward: deliverer, log });
    await j1.deliver('replayed', [alarm('PrimaryDown-1')]);
    await j1.deliver('replayed', [alarm('PrimaryDown-2')]);
    // On disk before anything else: a header and the two deliveries, in order, with ids.
    const written = lines(path).filter((l) => 'seq' in l);
    expect(written.map((l) => (l.signals as AlarmSignal[])[0]!.name)).toEqual(['PrimaryDown-1', 'PrimaryDown-2']);
    expect((written[0]!.signals as AlarmSignal[])[0]!.id).toMatch(/^[0-9a-f-]{36}:1\.0$/);
    // Every write's time to disk is kept for /healthz: the header and the two deliveries at least.
    const w = j1.stats().writeMs!;
    expect(w.samples).toBeGreaterThanOrEqual(3);
    expect(w.p50).toBeGreaterThan(0);
    expect(w.max).toBeGreaterThanOrEqual(w.p99);
    await j1.drained();
    await waitFor('the guardian to have both alarms', async () => (await view('replayed')).received === 2);
    await j1.close();

    // A crash after the guardian had them but before the marks reached the file.
    writeFileSync(
      path,
      readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => !l.includes('"forwarded"'))
        .join('\n'),
    );
    const j2 = await AlarmJournal.open({ path, forward: deliverer, log });
    expect(j2.stats().replayed).toBe(2);
    await j2.drained();
    expect(logs.some((l) => l.includes('forwarding 2 delivery(ies) accepted before the last stop'))).toBe(true);
    // Forwarded again, dropped by id: still 2 failing signals of 3, no run.
    const v = await view('replayed');
    expect(v.received).toBe(2);
    expect(v.failing).toEqual([expect.objectContaining({ region: WEST, count: 2 })]);
    expect(v.runsStarted).toBe(0);

    // The numbering goes on after a reopen: a third alarm is new, and reaches the threshold.
    await j2.deliver('replayed', [alarm('PrimaryDown-3')]);
    await j2.drained();
    await waitFor('the third distinct alarm to start the run', async () => (await view('replayed')).runsStarted === 1);
    expect(
      lines(path)
        .filter((l) => 'seq' in l)
        .map((l) => l.seq),
    ).toEqual([1, 2, 3]);
    await j2.close();
  });

  it('accepts while the guardians are unreachable, refuses with 503 past maxPending, and the next process forwards what it accepted', async () => {
    const path = join(dir, 'offline.jsonl');
    // A client whose Temporal is not there (and that does not retry): every forward fails, as
    // during a Temporal outage.
    const deadPort = await freePort();
    const dead = new Client({
      connection: Connection.lazy({ address: `127.0.0.1:${deadPort}`, connectTimeout: 200, interceptors: [] }),
    });
    const unreachable = new Deliverer({ client: dead, config: te.config, runbook: GATE });
    const journal = await AlarmJournal.open({ path, forward: unreachable, maxPending: 3, log });
    const config = {
      ...te.config,
      services: te.config.services.filter((s) => s.name === 'offline'),
      triggers: { intake: { host: '127.0.0.1', port: 0 } },
    } as typeof te.config;
    const server = await startIntakeServer({ config, sink: journal, secrets: { alertmanager: TOKEN }, log });
    const post = async () => {
      const res = await fetch(`${server.url}/alertmanager`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          version: '4',
          status: 'firing',
          alerts: [
            {
              status: 'firing',
              labels: { alertname: 'PrimaryDown', region: WEST },
              startsAt: new Date().toISOString(),
            },
          ],
        }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    try {
      for (let i = 0; i < 3; i++) expect((await post()).status).toBe(202);
      const refused = await post();
      expect(refused.status).toBe(503);
      expect(String(refused.body.error)).toMatch(
        /^could not accept the alarm \(3 alarm deliveries are waiting for their guardians \(Failed to signalWithStart Workflow: .*\); refusing more until they drain\); retry$/,
      );
      await waitFor('the forward to fail', async () => journal.stats().lastError !== undefined);
      const health = (await (await fetch(`${server.url}/healthz`)).json()) as {
        journal: { pending: number; lastError: string };
      };
      expect(health.journal.pending).toBe(3);
      const said = logs.find((l) => l.includes('cannot forward'));
      expect(said).toMatch(
        /^intake: cannot forward \d alarm delivery\(ies\) to their guardians: Failed to signalWithStart Workflow: .+; they are kept in \S+offline\.jsonl and retried$/,
      );
    } finally {
      await server.close();
      await journal.close();
      await dead.connection.close().catch(() => undefined);
    }
    expect((await view('offline')).received).toBe(0);

    // The next intake process, with Temporal back: all three reach the guardian, and its run starts.
    const next = await AlarmJournal.open({ path, forward: deliverer, log });
    expect(next.stats().replayed).toBe(3);
    await next.drained();
    await waitFor('the replayed alarms to start the run', async () => (await view('offline')).runsStarted === 1);
    expect((await view('offline')).received).toBe(3);
    await next.close();
  });

  it('skips a damaged line, says which, and keeps the file as found; drops a torn last line', async () => {
    const path = join(dir, 'damaged.jsonl');
    const id = '0190f0e2-0000-7000-8000-000000000000';
    const entry = (seq: number) =>
      JSON.stringify({ seq, service: 'replayed', signals: [{ ...alarm(`Damaged-${seq}`), id: `${id}:${seq}.0` }] });
    writeFileSync(
      path,
      [JSON.stringify({ journal: id, next: 1 }), entry(1), 'not json at all', entry(2), '{"seq":3,"serv'].join('\n'),
    );
    const seen: string[] = [];
    const recorder = {
      deliver: async (_service: string, signals: AlarmSignal[]) => void seen.push(...signals.map((s) => s.name)),
    };
    const before = logs.length;
    const journal = await AlarmJournal.open({ path, forward: recorder, log });
    await journal.drained();
    expect(seen).toEqual(['Damaged-1', 'Damaged-2']);
    const said = logs.slice(before).find((l) => l.includes('are not journal records'));
    expect(said).toMatch(
      /line\(s\) 3 are not journal records and were skipped; the file as found is kept at .*damaged\.jsonl\.damaged-\d+/,
    );
    const aside = /kept at (\S+)$/.exec(said!)![1]!;
    expect(readFileSync(aside, 'utf8')).toContain('not json at all');
    // New deliveries continue the numbering after the last good one.
    await journal.deliver('replayed', [alarm('Damaged-next')]);
    expect(
      lines(path)
        .filter((l) => 'seq' in l)
        .at(-1)!.seq,
    ).toBe(3);
    await journal.close();
  });

  it('refuses a second intake on the same file, naming the holder', async () => {
    const path = join(dir, 'locked.jsonl');
    const recorder = { deliver: async () => undefined };
    const first = await AlarmJournal.open({ path, forward: recorder, log });
    const second = await AlarmJournal.open({ path, forward: recorder, log }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(second).toBeInstanceOf(LockBusyError);
    expect((second as Error).message).toMatch(
      new RegExp(
        `the alarm journal ${path.replace(/[.]/g, '\\.')} is in use by another intake \\(pid ${process.pid}\\)`,
      ),
    );
    await first.close();
    // Released on close: it opens again.
    const third = await AlarmJournal.open({ path, forward: recorder, log });
    await third.close();
  });
});
