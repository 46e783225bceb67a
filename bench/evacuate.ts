// Evacuating a region with three services, as test/evacuate.test.ts does but on a stack of the
// bench's own: ledger and payments write in us-west-2 (each gets a planned failover), statements
// writes in us-east-1 and only serves traffic in us-west-2 (it gets a drain), two at a time.
// Timed from the evacuation's start to its report; between runs, untimed, the two writers fail
// over back and statements is undrained, so every run evacuates the same layout.
import { performance } from 'node:perf_hooks';
import type { Client } from '@temporalio/client';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { connect } from '../src/lib/runs/client';
import { awaitEvacuation, buildEvacuateInput, startEvacuation } from '../src/lib/runs/evacuate';
import { waitUntilStreaming } from '../src/stack/postgres';
import { nodeOf } from '../src/demo/ledger';
import { runDrain, runFailover } from '../src/demo/runs';
import { BENCH_POLICY } from './failover';
import type { BenchSection, SectionResult } from './section';
import { spread } from './stats';
import { makeBenchStack, withStackEnv, type BenchStack } from './temp-stack';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const MAX_RUNS = 3;

export const evacuateSection: BenchSection = {
  name: 'evacuate',
  async run(ctx) {
    const out: SectionResult = { figures: {}, checks: [], notes: [], failures: [] };
    const runs = Math.min(ctx.options.runs, MAX_RUNS);
    if (runs === 0) return out;
    return withStackEnv(async () => {
      let stack: BenchStack | undefined;
      let client: Client | undefined;
      try {
        stack = await makeBenchStack(BENCH_POLICY, {
          moreServices: [
            { name: 'payments', regions: [WEST, EAST], priority: 1 },
            { name: 'statements', regions: [EAST, WEST], weights: { [EAST]: 60, [WEST]: 40 }, priority: 3 },
          ],
          extra: 'evacuation: { maxConcurrent: 2 }',
        });
        ctx.say(`evacuation stack in ${stack.dir} (ledger, payments, statements):`);
        const up = await stack.up((line) => ctx.say(`  ${line}`));
        if (!up.ok)
          throw new Error(
            `the evacuation stack did not come up: ${up.components
              .filter((c) => c.health === 'down')
              .map((c) => `${c.name}: ${c.detail}`)
              .join('; ')}`,
          );
        const config = stack.config;
        client = await connect(config);
        const runbooks = {
          failover: loadRunbook(builtinRunbookPath('failover')),
          drain: loadRunbook(builtinRunbookPath('drain')),
        };
        const walls: number[] = [];
        const region = WEST;
        const streaming = async () => {
          // A planned run needs every standby streaming; the last failover restarted its old primary as one.
          for (const svc of config.services) for (const r of svc.regions) await waitUntilStreaming(nodeOf(svc, r));
        };
        for (let i = 0; i < runs; i++) {
          if (i > 0) {
            await streaming();
            const back = await Promise.all([
              runFailover(client, config, {
                service: 'ledger',
                target: WEST,
                mode: 'planned',
                requestedBy: 'bench',
                trigger: 'bench',
              }),
              runFailover(client, config, {
                service: 'payments',
                target: WEST,
                mode: 'planned',
                requestedBy: 'bench',
                trigger: 'bench',
              }),
              runDrain(client, config, {
                kind: 'undrain',
                service: 'statements',
                region: WEST,
                requestedBy: 'bench',
                trigger: 'bench',
              }),
            ]);
            const failed = back.find((r) => r.record.status !== 'succeeded');
            if (failed) {
              out.failures.push(
                `evacuate: putting ${failed.record.service} back before run ${i + 1} ${failed.record.status}: ${failed.record.error ?? ''} (${failed.uiUrl})`,
              );
              break;
            }
          }
          await streaming();
          const input = buildEvacuateInput(config, {
            region,
            mode: 'planned',
            requestedBy: 'bench',
            trigger: 'bench',
            runbooks,
          });
          const t0 = performance.now();
          const started = await startEvacuation(client, input);
          const report = await awaitEvacuation(client, started.workflowId, started.runId);
          const wallMs = Math.round(performance.now() - t0);
          const what = report.services.map((e) => `${e.service} ${e.action} ${e.status}`).join(', ');
          if (report.status !== 'succeeded') {
            out.failures.push(
              `evacuate ${region}: ${report.status} (${what}): ${report.services
                .map((e) => e.error)
                .filter(Boolean)
                .join('; ')}`,
            );
            break;
          }
          walls.push(wallMs);
          ctx.say(
            `  evacuate ${i + 1}/${runs} ${region}: ${wallMs} ms (${what}; at most ${report.maxRunning} at once)`,
          );
        }
        const reproduce = `npm run bench -- --only evacuate --runs ${runs}`;
        out.checks.push({
          path: 'evacuate.threeServices.wallMs',
          what: 'evacuate a region: two planned failovers and one drain, two at a time, start → report',
          samples: walls,
          reproduce,
        });
        out.figures = {
          evacuate: { threeServices: { wallMs: spread(walls).median, runs: walls.length, samples: walls } },
        };
        out.notes.push(
          'evacuate: three services, each its own PostgreSQL pair, evacuation.maxConcurrent 2; each run evacuates us-west-2 from the same layout',
        );
      } finally {
        await client?.connection.close().catch(() => undefined);
        await stack?.destroy();
      }
      return out;
    });
  },
};
