// The replay suite: every history recorded from a released version (test/histories/<version>/,
// made by `npm run record-histories` on a real local stack) replays with the workflow code of this
// checkout, as the control workers run it. A change to workflows/ that would fail a run in flight
// after a deploy fails here first. Proved once: a deliberate change to the runbook (a fixture,
// bundled on its own) fails the recorded runbook histories.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixtureCodecEnv, HISTORIES_DIR } from '../src/build/history-fixtures';
import { dataConverterFromEnv } from '../src/lib/codec/env';
import { workflowExporterSink } from '../src/lib/tracing';
import { WORKFLOW_INTERCEPTOR_MODULES } from '../workers/bundle';
import { controlBundle } from '../workers/versioning';
import { installQuietRuntime } from './support/temporal-env';

interface Recorded {
  /** <version>/<name> */
  workflowId: string;
  history: temporal.api.history.v1.IHistory;
}

const VERSIONS = readdirSync(HISTORIES_DIR, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

function recorded(version: string): Recorded[] {
  return readdirSync(join(HISTORIES_DIR, version))
    .filter((f) => f.endsWith('.history.pb'))
    .sort()
    .map((f) => ({
      workflowId: `${version}/${f.slice(0, -'.history.pb'.length)}`,
      history: temporal.api.history.v1.History.decode(readFileSync(join(HISTORIES_DIR, version, f))),
    }));
}

const ALL = VERSIONS.flatMap(recorded);

/** Each history's outcome, "<version>/<name> ok" or "<version>/<name> <ErrorName>". */
async function replay(code: string): Promise<string[]> {
  // The sinks the control worker gives the bundle's interceptors (workers/region.ts); replay never calls them.
  const sinks = { regionshiftMetrics: { runEnded: { fn: () => undefined } }, ...workflowExporterSink(undefined) };
  const out: string[] = [];
  for await (const r of Worker.runReplayHistories(
    { workflowBundle: { code }, sinks, dataConverter: dataConverterFromEnv(fixtureCodecEnv()) },
    ALL,
  )) {
    out.push(`${r.workflowId} ${r.error ? r.error.name : 'ok'}`);
  }
  return out;
}

const fixtureBundle = async (name: string): Promise<string> =>
  (
    await bundleWorkflowCode({
      workflowsPath: join(__dirname, 'fixtures', 'workflow-changes', `${name}.ts`),
      workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES,
    })
  ).code;

beforeAll(() => installQuietRuntime());

describe('histories recorded from released versions', () => {
  it('cover the runs a release makes: failovers planned and unplanned, reconcile, failback, drain and undrain, the guardian', () => {
    expect(VERSIONS.length).toBeGreaterThan(0);
    for (const version of VERSIONS) {
      const names = recorded(version).map((r) => r.workflowId.slice(version.length + 1));
      for (const kind of [
        'failover-planned',
        'failover-unplanned',
        'reconcile',
        'failback',
        'drain',
        'undrain',
        'guardian',
      ]) {
        expect(
          names.some((n) => n.startsWith(kind)),
          `${version} has no ${kind} history`,
        ).toBe(true);
      }
    }
  });

  it("every one replays with this checkout's workflow bundle", async () => {
    const results = await replay((await controlBundle()).workflowBundle.code);
    expect(results).toEqual(ALL.map((r) => `${r.workflowId} ok`));
  });

  it('a change to the runbook that alters its commands, not behind patched(), fails them', async () => {
    const broken = await replay(await fixtureBundle('unpatched'));
    const runbooks = ALL.filter(
      (r) => r.history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name === 'runbook',
    ).map((r) => r.workflowId);
    expect(runbooks.length).toBeGreaterThan(4);
    expect(broken).toEqual(
      ALL.map((r) => `${r.workflowId} ${runbooks.includes(r.workflowId) ? 'DeterminismViolationError' : 'ok'}`),
    );
  });
});
