// Delivering alarms to the services' guardians: signal-with-start, so the first alarm for a
// service creates its guardian. Deliveries to one guardian are group-committed: while a signal is
// in flight, the alarms that arrive meanwhile wait and go together in the next one. A request is
// answered only after the signal carrying its alarm is stored by Temporal, so an accepted alarm
// is never lost, and a storm of a thousand alarms costs Temporal a couple of hundred signals.
// (The guardian also orders an alarm's state changes by the alarm's own time, since SNS does not
// guarantee order.)
import type { Client } from '@temporalio/client';
import type { Config, Service } from '../lib/config/schema';
import { serviceTriggersOf } from '../lib/config/triggers';
import { residencyRuleOf, residencyViolation } from '../contract/policy/residency';
import { CONTROL_TASK_QUEUE, runWorkflowId } from '../contract/runbook/ids';
import type { RunbookDoc } from '../contract/runbook/types';
import { awaitRecord } from '../lib/runs/client';
import { FollowingClient } from '../lib/runs/following';
import { loadRunbook, runbookPathFor } from '../lib/runbooks';
import { guardianWorkflowId } from '../contract/guardian/ids';
import { runSummaryOf } from '../contract/guardian/summary';
import { approvalOverride } from '../lib/config/approval';
import type { AlarmSignal, GuardianInput, GuardianSeed, GuardianSettings } from '../contract/guardian/types';

export function guardianSettings(
  config: Config,
  service: Service,
  runbook: RunbookDoc,
  extra: Partial<GuardianSettings> = {},
): GuardianSettings {
  const t = serviceTriggersOf(service);
  const residency = residencyRuleOf(config, service);
  return {
    regions: service.regions,
    // The guardian never picks a target the service's data-residency class forbids.
    ...(residency
      ? { allowedTargets: service.regions.filter((r) => !residencyViolation(residency, service.name, r)) }
      : {}),
    policy: service.policy,
    runbook,
    debounce: t.debounce,
    approval: approvalOverride(service, 'unplanned'),
    drainRunbook: loadRunbook(runbookPathFor(service, 'drain')),
    undrainRunbook: loadRunbook(runbookPathFor(service, 'undrain')),
    undrainAfter: t.undrainAfter,
    ...(t.quorum !== undefined ? { quorum: t.quorum } : {}),
    ...(service.cache ? { cache: true } : {}),
    ...extra,
  };
}

/**
 * What Temporal knows of the service's runs, for a guardian that starts now: the run in progress,
 * or the last one (its end starts the cooldown; a successful failover names the writer).
 */
export async function guardianSeed(client: Client, service: string): Promise<GuardianSeed> {
  const handle = client.workflow.getHandle(runWorkflowId(service));
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') return {};
    throw err;
  }
  if (desc.status.name === 'RUNNING') {
    return {
      current: {
        workflowId: desc.workflowId,
        runId: desc.runId,
        status: 'running',
        startedAt: desc.startTime.toISOString(),
      },
    };
  }
  try {
    const rec = await awaitRecord(client, desc.workflowId, desc.runId);
    const s = runSummaryOf(rec);
    if (rec.dryRun) return {};
    return {
      lastRun: s,
      ...(rec.status === 'succeeded' && (rec.kind === 'failover' || rec.kind === 'failback')
        ? { primary: rec.target }
        : {}),
    };
  } catch {
    // Terminated or timed out: no record, but it did end.
    return {
      lastRun: {
        workflowId: desc.workflowId,
        runId: desc.runId,
        status: 'failed',
        endedAt: (desc.closeTime ?? new Date()).toISOString(),
      },
    };
  }
}

export interface DelivererOptions {
  /** A FollowingClient follows the namespace, and may fail it over to deliver (the intake's own). */
  client: Client | FollowingClient;
  config: Config;
  runbook: RunbookDoc;
  /** A service's own failover runbook (config `runbooks:`), instead of `runbook`. */
  runbooks?: Record<string, RunbookDoc>;
  /** Which guardian a service's alarms go to; the bench uses its own. */
  guardianWorkflowId?: (service: string) => string;
  settingsExtra?: Partial<GuardianSettings>;
  /**
   * Signals to one guardian in flight at once. Default 1: measured, more in flight means smaller
   * batches and more work for Temporal per alarm, so a storm gets slower, not faster.
   */
  maxInFlight?: number;
}

interface Waiting {
  signals: AlarmSignal[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class Deliverer {
  private readonly waiting = new Map<string, Waiting[]>();
  private readonly inFlight = new Map<string, number>();
  private readonly settings = new Map<string, GuardianSettings>();
  /** Services whose guardian this process has started or configured. */
  private readonly known = new Set<string>();
  readonly guardianId: (service: string) => string;
  readonly temporal: FollowingClient;
  /** Signals sent, for the log and the bench. */
  signalsSent = 0;

  constructor(private readonly opts: DelivererOptions) {
    this.guardianId = opts.guardianWorkflowId ?? guardianWorkflowId;
    this.temporal = opts.client instanceof FollowingClient ? opts.client : FollowingClient.fixed(opts.client);
  }

  settingsOf(service: string): GuardianSettings {
    let s = this.settings.get(service);
    if (!s) {
      const svc = this.opts.config.services.find((x) => x.name === service);
      if (!svc) throw new Error(`unknown service ${service}`);
      s = guardianSettings(
        this.opts.config,
        svc,
        this.opts.runbooks?.[service] ?? this.opts.runbook,
        this.opts.settingsExtra,
      );
      this.settings.set(service, s);
    }
    return s;
  }

  /** Resolves once the guardian has the alarms (stored in its history). */
  deliver(service: string, signals: AlarmSignal[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const list = this.waiting.get(service) ?? [];
      list.push({ signals, resolve, reject });
      this.waiting.set(service, list);
      this.pump(service);
    });
  }

  private pump(service: string): void {
    const max = this.opts.maxInFlight ?? 1;
    while ((this.inFlight.get(service) ?? 0) < max) {
      const batch = this.waiting.get(service) ?? [];
      if (batch.length === 0) return;
      this.waiting.delete(service);
      this.inFlight.set(service, (this.inFlight.get(service) ?? 0) + 1);
      this.signal(
        service,
        batch.flatMap((w) => w.signals),
      )
        .then(
          () => batch.forEach((w) => w.resolve()),
          (err: unknown) => batch.forEach((w) => w.reject(err)),
        )
        .finally(() => {
          this.inFlight.set(service, (this.inFlight.get(service) ?? 1) - 1);
          this.pump(service);
        });
    }
  }

  private async signal(service: string, alarms: AlarmSignal[]): Promise<void> {
    const workflowId = this.guardianId(service);
    // A plain signal when this process has seen the guardian running (smaller request); the
    // first delivery, and any after the guardian vanished, signal-with-start it.
    if (this.known.has(service)) {
      try {
        // An alarm to deliver is what may move the namespace when its cluster stays silent.
        await this.temporal.run((c) => c.workflow.getHandle(workflowId).signal('alarm', alarms), { failover: true });
        this.signalsSent++;
        return;
      } catch (err) {
        if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
        this.known.delete(service);
      }
    }
    const input: GuardianInput = { service, settings: this.settingsOf(service) };
    await this.temporal.run(
      (c) =>
        c.workflow.signalWithStart('guardian', {
          workflowId,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [input],
          signal: 'alarm',
          signalArgs: [alarms],
          staticSummary: `guardian of ${service}: debounce, cooldown, single flight for alarm-started failovers`,
        }),
      { failover: true },
    );
    this.known.add(service);
    this.signalsSent++;
  }

  /**
   * Starts (or reconfigures) each service's guardian with the current config and what Temporal
   * knows of its runs: called when the intake starts, so a config change reaches the guardians.
   */
  async configureAll(): Promise<void> {
    await Promise.all(
      this.opts.config.services.map(async (svc) => {
        const seed = await this.temporal.run((c) => guardianSeed(c, svc.name));
        const settings = this.settingsOf(svc.name);
        const input: GuardianInput = { service: svc.name, settings, seed };
        await this.temporal.run((c) =>
          c.workflow.signalWithStart('guardian', {
            workflowId: this.guardianId(svc.name),
            taskQueue: CONTROL_TASK_QUEUE,
            args: [input],
            signal: 'configure',
            signalArgs: [{ settings, seed }],
            staticSummary: `guardian of ${svc.name}: debounce, cooldown, single flight for alarm-started failovers`,
          }),
        );
        this.known.add(svc.name);
      }),
    );
  }
}
