// `--to auto`: learn the topology with a dry run (its preflight asks every region's worker), then
// let the target policy choose (src/contract/policy/target.ts): healthy, least lag, residency-allowed.
import type { Client } from '@temporalio/client';
import type { Config } from '../config/schema';
import { residencyRuleOf, regionAllowed } from '../../contract/policy/residency';
import { chooseTarget, NoTargetError, type TargetChoice } from '../../contract/policy/target';
import type { RunbookDoc } from '../../contract/runbook/types';
import {
  awaitRecord,
  buildRunInput,
  findService,
  InputError,
  RefusedError,
  startRun,
  type StartRequest,
} from './client';

export async function chooseTargetByPolicy(
  client: Client,
  config: Config,
  runbook: RunbookDoc,
  req: Omit<StartRequest, 'target' | 'dryRun'>,
): Promise<TargetChoice> {
  const service = findService(config, req.service);
  const residency = residencyRuleOf(config, service);
  // Any region preflight accepts as a target will do: it records every region's state first.
  const probe = service.regions.find(
    (r) => r !== req.source && (!residency || residency.allowOutside || regionAllowed(residency, r)),
  );
  if (!probe)
    throw new InputError(
      `no region of ${service.name} is allowed as a failover target by its residency class ${residency?.class}`,
    );
  const started = await startRun(
    client,
    buildRunInput(config, runbook, { ...req, target: probe, dryRun: true, trigger: `${req.trigger} (auto target)` }),
  );
  const rec = await awaitRecord(client, started.workflowId, started.runId);
  if (!rec.topology)
    throw new RefusedError(
      `could not learn the topology of ${service.name} to choose a target: ${rec.error ?? 'preflight did not run'}`,
    );
  try {
    return chooseTarget(service, rec.topology, {
      ...(residency ? { residency } : {}),
      ...(req.source ? { source: req.source } : {}),
    });
  } catch (err) {
    if (err instanceof NoTargetError) throw new RefusedError(err.message);
    throw err;
  }
}
