// Four regions as the reference design runs them (us-west-2 40, us-east-1 30, eu-west-1 20,
// ap-southeast-1 10; one writer, three streaming standbys): a stack of its own brought up from
// nothing, then planned failovers back and forth, each timed until every standby streams from
// the new primary (the run ends after db.repointStandbys and the old primary's rejoin, and its
// record lists every region as it left it).
import { performance } from 'node:perf_hooks';
import type { Client } from '@temporalio/client';
import { nodeOf } from '../src/demo/ledger';
import { runFailover } from '../src/demo/runs';
import { connect, findService } from '../src/lib/runs/client';
import { waitUntilStreaming } from '../src/stack/postgres';
import { BENCH_POLICY } from './failover';
import { runTiming } from './history';
import type { BenchSection, SectionResult } from './section';
import { spread } from './stats';
import { makeBenchStack, withStackEnv, type BenchStack } from './temp-stack';

const REGIONS = ['us-west-2', 'us-east-1', 'eu-west-1', 'ap-southeast-1'];
const WEIGHTS = { 'us-west-2': 40, 'us-east-1': 30, 'eu-west-1': 20, 'ap-southeast-1': 10 };

export const fourRegionsSection: BenchSection = {
  name: 'four-regions',
  async run(ctx) {
    const out: SectionResult = { figures: {}, checks: [], notes: [], failures: [] };
    if (ctx.options.runs === 0) return out;
    return withStackEnv(async () => {
      let stack: BenchStack | undefined;
      let client: Client | undefined;
      try {
        stack = await makeBenchStack(BENCH_POLICY, { regions: REGIONS, weights: WEIGHTS });
        ctx.say(`four-region stack in ${stack.dir}; up from nothing:`);
        const t0 = performance.now();
        const up = await stack.up((line) => ctx.say(`  ${line}`));
        const upMs = Math.round(performance.now() - t0);
        if (!up.ok)
          throw new Error(
            `the four-region stack did not come up: ${up.components
              .filter((c) => c.health === 'down')
              .map((c) => `${c.name}: ${c.detail}`)
              .join('; ')}`,
          );
        ctx.say(`  up in ${upMs} ms`);
        client = await connect(stack.config);
        const service = findService(stack.config, 'ledger');
        const walls: number[] = [];
        let writer = REGIONS[0]!;
        for (let i = 0; i < ctx.options.runs; i++) {
          const target = writer === REGIONS[0] ? REGIONS[1]! : REGIONS[0]!;
          // The previous run's rejoin restarted the old primary; a planned run needs it streaming.
          await waitUntilStreaming(nodeOf(service, target));
          const run = await runFailover(client, stack.config, {
            service: service.name,
            target,
            mode: 'planned',
            requestedBy: 'bench',
            trigger: 'bench',
          });
          const address = `${nodeOf(service, target).host}:${nodeOf(service, target).port}`;
          const strays = (run.record.topologyAfter ?? [])
            .filter((n) => n.region !== target && n.streamingFrom !== address)
            .map((n) => n.region);
          if (run.record.status !== 'succeeded' || strays.length > 0 || !run.record.topologyAfter) {
            out.failures.push(
              `four regions: planned ${writer} → ${target} ${run.record.status}${strays.length ? `, not following ${target}: ${strays.join(', ')}` : ''}: ${run.record.error ?? ''} (${run.uiUrl})`,
            );
            break;
          }
          const t = await runTiming(client, run.workflowId, run.runId);
          walls.push(t.wallMs);
          const how = (run.record.standbys ?? []).map((s) => `${s.region} by ${s.how}`).join(', ');
          ctx.say(
            `  planned ${i + 1}/${ctx.options.runs} ${writer} → ${target}: wall ${t.wallMs} ms, every standby following ${target} (${how})`,
          );
          writer = target;
        }
        const reproduce = `npm run bench -- --runs ${ctx.options.runs} --unplanned-runs 0`;
        out.checks.push(
          {
            path: 'stack.fourRegions.upMs',
            what: 'stack up from nothing, four regions (four PostgreSQL, four workers, Temporal, moto)',
            samples: [upMs],
            targetMax: 15_000,
            reproduce,
          },
          {
            path: 'failover.fourRegions.plannedWallMs',
            what: 'planned failover, four regions: start → every standby streaming from the new primary',
            samples: walls,
            targetMax: 5_000,
            reproduce,
          },
        );
        out.figures = {
          stack: { fourRegions: { upMs } },
          failover: { fourRegions: { plannedWallMs: spread(walls).median, runs: walls.length, samples: walls } },
        };
      } finally {
        await client?.connection.close().catch(() => undefined);
        await stack?.destroy();
      }
      return out;
    });
  },
};
