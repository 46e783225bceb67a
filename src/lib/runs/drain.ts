// Starting drain and undrain runs from outside Temporal (CLI, evacuation). An undrain restores the
// records exactly as its drain found them. Where that before-state comes from: the run record of
// the service's latest succeeded drain of the region, found in Temporal's runs of the service's
// workflow id (regionshift-<service>, newest first), and passed whole in the undrain's input, so
// the run itself never looks anything up. An undrain of the region after that drain means there
// is nothing left to undo; with no drain to undo (a failover moved the traffic away), the run
// gives the region its configured share back instead. The guardian, a workflow, learns the drain
// record from the drain's end signal (workflows/guardian.ts).
import type { Client } from '@temporalio/client';
import type { Config } from '../config/schema';
import type { DrainHandoff, Mode, RunbookDoc, RunInput } from '../../contract/runbook/types';
import { drainHandoffOf } from '../../contract/guardian/summary';
import { finishedRecords, findService, InputError } from './client';

export interface DrainRequest {
  service: string;
  region: string;
  mode?: Mode;
  dryRun?: boolean;
  requestedBy: string;
  trigger: string;
  triggeredAt?: number;
  drained?: DrainHandoff;
}

/** Checks what can be checked before anything starts: the service, the region, the runbook's kind. */
export function buildDrainInput(config: Config, runbook: RunbookDoc, req: DrainRequest): RunInput {
  const service = findService(config, req.service);
  if (runbook.kind !== 'drain' && runbook.kind !== 'undrain')
    throw new InputError(`runbook ${runbook.file} is a ${runbook.kind} runbook; expected drain or undrain`);
  if (!service.regions.includes(req.region)) {
    throw new InputError(
      `unknown region "${req.region}" for ${service.name}; its regions: ${service.regions.join(', ')}`,
    );
  }
  return {
    runbook,
    service: service.name,
    regions: service.regions,
    mode: req.mode ?? 'planned',
    target: req.region,
    region: req.region,
    dryRun: req.dryRun ?? false,
    policy: service.policy,
    requestedBy: req.requestedBy,
    trigger: req.trigger,
    ...(req.triggeredAt !== undefined ? { triggeredAt: req.triggeredAt } : {}),
    ...(req.drained ? { drained: req.drained } : {}),
  };
}

/**
 * The latest succeeded drain of `region` for the service, unless an undrain of it succeeded
 * since. Looks at the newest `lookBack` runs.
 */
export async function latestDrain(
  client: Client,
  service: string,
  region: string,
  lookBack = 25,
): Promise<DrainHandoff | undefined> {
  for await (const rec of finishedRecords(client, service, lookBack)) {
    if (rec.dryRun || rec.status !== 'succeeded' || rec.drain?.region !== region) continue;
    if (rec.kind === 'undrain') return undefined;
    const handoff = drainHandoffOf(rec);
    if (handoff) return handoff;
  }
  return undefined;
}

/** The undrain input for the region's latest drain, or, with none to undo, for its configured share. */
export async function buildUndrainInput(
  client: Client,
  config: Config,
  runbook: RunbookDoc,
  req: Omit<DrainRequest, 'drained'>,
): Promise<RunInput> {
  const service = findService(config, req.service);
  buildDrainInput(config, runbook, req); // bad input is reported before Temporal is asked anything
  const drained = await latestDrain(client, service.name, req.region);
  return buildDrainInput(config, runbook, { ...req, ...(drained ? { drained } : {}) });
}
