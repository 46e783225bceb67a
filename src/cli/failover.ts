import { parseArgs } from 'node:util';
import { loadServiceRunbook } from '../lib/runbooks';
import type { Mode } from '../contract/runbook/types';
import { chooseTargetByPolicy } from '../lib/runs/auto-target';
import { buildRunInput, connect, InputError } from '../lib/runs/client';
import { requester } from './identity';
import { guard } from './exit';
import { loadConfig } from '../lib/config/load';
import { clusterEndpoints, endpointOf, failoverControlPlane } from '../lib/runs/control-plane';
import { startAndFollow } from './run-follow';

const USAGE =
  'usage: regionshift failover --service S --to REGION|auto [--from REGION] [--mode planned|unplanned] [--control-plane REGION] [--dry-run] [--join] [--no-wait] [--by NAME] [--json]';

export function failoverCommand(argv: string[], forceDryRun = false): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        service: { type: 'string' },
        to: { type: 'string' },
        from: { type: 'string' },
        mode: { type: 'string', default: 'planned' },
        'dry-run': { type: 'boolean', default: false },
        join: { type: 'boolean', default: false },
        'no-wait': { type: 'boolean', default: false },
        by: { type: 'string' },
        trigger: { type: 'string', default: 'cli' },
        runbook: { type: 'string' },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
        'control-plane': { type: 'string' },
      },
      strict: true,
    });
    if (!values.service || !values.to) throw new InputError(`--service and --to are required\n${USAGE}`);
    if (values.mode !== 'planned' && values.mode !== 'unplanned')
      throw new InputError(`--mode is planned or unplanned, not "${values.mode}"`);
    const cfg = loadConfig(values.config);
    const runbook = await loadServiceRunbook(cfg, values.service, 'failover', values.runbook);
    // The writer region lost with its Temporal cluster: the namespace moves to a surviving cluster
    // first, and the run starts there (the old active cluster cannot take it).
    const cp = values['control-plane'];
    let address: string | undefined;
    if (cp !== undefined) {
      if (!clusterEndpoints(cfg))
        throw new InputError(
          `--control-plane ${cp}: the control plane is a single cluster (set temporal.clusters or stack.controlPlane: replicated)`,
        );
      if (!clusterEndpoints(cfg)!.some((c) => c.region === cp))
        throw new InputError(
          `--control-plane ${cp}: no such cluster; clusters: ${clusterEndpoints(cfg)!
            .map((c) => c.region)
            .join(', ')}`,
        );
      const moved = await failoverControlPlane(cfg, cp);
      if (!json)
        console.log(
          moved.changed
            ? `control plane: namespace ${cfg.temporal.namespace} failed over ${moved.from} → ${moved.to} (failover version ${moved.failoverVersion})`
            : `control plane: namespace ${cfg.temporal.namespace} already active in ${cp}`,
        );
      address = endpointOf(cfg, cp).address;
    }
    const connectTo = () => connect(cfg, address ? { address } : {});
    let client: Awaited<ReturnType<typeof connect>> | undefined;
    const base = {
      service: values.service,
      source: values.from,
      mode: values.mode as Mode,
      requestedBy: requester(values.by),
      trigger: values.trigger,
    };
    // --to auto: the target policy picks (healthy, least lag, residency-allowed) from a dry run's topology.
    const auto =
      values.to === 'auto' ? await chooseTargetByPolicy((client = await connectTo()), cfg, runbook, base) : undefined;
    if (auto && !json) console.log(`target: ${auto.reason}`);
    const input = buildRunInput(cfg, runbook, {
      service: values.service,
      target: auto?.target ?? values.to,
      source: values.from,
      mode: values.mode as Mode,
      dryRun: forceDryRun || values['dry-run'],
      requestedBy: requester(values.by),
      trigger: values.trigger,
    });
    client ??= await connectTo();
    return startAndFollow(client, cfg, input, { json, noWait: values['no-wait'], join: values.join });
  });
}

// Starting, following and the exit code live in run-follow.ts (shared with reconcile and failback).
export { exitCodeOf } from './run-follow';
