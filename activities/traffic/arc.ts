// The Route 53 ARC traffic provider (traffic.provider: route53-arc): clients reach a region while
// its routing control is On. Routing controls gate Route 53 health checks, so the DNS records
// themselves never change; what changes is which of them Route 53 considers healthy.
//
// Behaviour taken from the Route 53 ARC documentation (there is no ARC in moto):
// - The routing-control data plane is a cluster of five regional endpoints. Any of them can read
//   or change a routing control; when one is unavailable, try the next (requests are signed for
//   the endpoint's own region). This is the data plane that stays up when a region, or the
//   Route 53 control plane in us-east-1, does not.
// - UpdateRoutingControlStates changes several controls in one transaction, and the control
//   panel's safety rules (e.g. "at least one region On") are evaluated on the batch: turning the
//   target On and the source Off in one call never passes through a state a rule forbids.
// - A change is visible to the data plane at once; clients holding an old DNS answer keep it for
//   the records' TTL.
import {
  GetRoutingControlStateCommand,
  Route53RecoveryClusterClient,
  UpdateRoutingControlStatesCommand,
  type UpdateRoutingControlStateEntry,
} from '@aws-sdk/client-route53-recovery-cluster';
import { ApplicationFailure } from '@temporalio/common';
import type { Config, Route53ArcTraffic, Service } from '../../src/lib/config/schema';
import { perService } from '../per-service';
import { awsClientConfig } from '../aws/clients';
import { awsFailure, classifyAwsError, errorText } from '../aws/errors';
import type {
  DrainInput,
  RegionActivities,
  RestoreInput,
  ServiceRef,
  ShiftInput,
  ShiftResult,
  TrafficRecord,
  TrafficState,
  UndrainInput,
} from '../../src/contract/activities';

export type ArcActivities = Pick<
  RegionActivities,
  'trafficDescribe' | 'trafficShift' | 'trafficRestore' | 'trafficDrain' | 'trafficUndrain'
>;

type ControlState = 'On' | 'Off';

export interface ArcOptions {
  env?: NodeJS.ProcessEnv;
}

/** Routing-control reads and writes for one service, trying the cluster's endpoints in turn. */
export class RoutingControls {
  private readonly clients: { url: string; region: string; client: Route53RecoveryClusterClient }[];
  /** The endpoint that answered last: tried first next time. */
  private preferred = 0;

  constructor(
    readonly service: Service,
    readonly traffic: Route53ArcTraffic,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.clients = traffic.clusterEndpoints.map((ep) => ({
      ...ep,
      // Two SDK attempts per endpoint: the next endpoint is a better retry than the same one.
      client: new Route53RecoveryClusterClient(
        awsClientConfig({ region: ep.region, endpointUrl: ep.url, standIn: false, roleArn: traffic.roleArn }, env, 2),
      ),
    }));
  }

  arnOf(region: string): string {
    const arn = this.traffic.routingControls[region];
    if (!arn) {
      throw ApplicationFailure.nonRetryable(
        `service ${this.service.name} has no routing control for region ${region} (it has: ${Object.keys(this.traffic.routingControls).join(', ')}); add traffic.routingControls.${region}`,
        'UnknownRegion',
      );
    }
    return arn;
  }

  /** Runs `call` on the endpoints in turn until one answers; a refusal (not an outage) ends it at once. */
  private async onAnyEndpoint<T>(what: string, call: (client: Route53RecoveryClusterClient) => Promise<T>): Promise<T> {
    const failures: string[] = [];
    for (let i = 0; i < this.clients.length; i++) {
      const index = (this.preferred + i) % this.clients.length;
      const ep = this.clients[index]!;
      try {
        const result = await call(ep.client);
        this.preferred = index;
        return result;
      } catch (err) {
        const kind = classifyAwsError(err);
        if (kind === 'permanent')
          throw awsFailure(
            err,
            `Route 53 ARC ${what} for service ${this.service.name} at ${ep.url} (${ep.region})`,
            arcHint(err),
          );
        failures.push(`${ep.url} (${ep.region}): ${errorText(err)}`);
      }
    }
    throw ApplicationFailure.retryable(
      `Route 53 ARC ${what} for service ${this.service.name}: no cluster endpoint answered (${failures.join('; ')}); retrying`,
      'ArcUnavailable',
    );
  }

  async read(): Promise<TrafficState> {
    const records: TrafficRecord[] = [];
    for (const region of this.service.regions) {
      const arn = this.arnOf(region);
      const res = await this.onAnyEndpoint(`GetRoutingControlState ${region}`, (c) =>
        c.send(new GetRoutingControlStateCommand({ RoutingControlArn: arn })),
      );
      const state = res.RoutingControlState;
      if (state !== 'On' && state !== 'Off') {
        throw ApplicationFailure.retryable(
          `Route 53 ARC answered routing control ${arn} (${region}) of service ${this.service.name} with state ${String(state)}`,
          'ArcUnexpectedState',
        );
      }
      records.push({ region, target: arn, routingControl: state, ttl: this.traffic.ttl });
    }
    return { recordName: `arc:${this.service.name}`, records };
  }

  /** Sets the given regions' controls in one transaction; those already in that state are left out. */
  async set(
    wanted: Record<string, ControlState>,
    why: string,
    opts: { allowNoneOn?: boolean } = {},
  ): Promise<ShiftResult> {
    const before = await this.read();
    const entries: UpdateRoutingControlStateEntry[] = [];
    for (const [region, state] of Object.entries(wanted)) {
      const now = before.records.find((r) => r.region === region);
      if (now?.routingControl !== state)
        entries.push({ RoutingControlArn: this.arnOf(region), RoutingControlState: state });
    }
    if (entries.length === 0) return { before, after: before, maxCachedSeconds: this.traffic.ttl, changed: false };
    const after = before.records.map((r) => ({ ...r, routingControl: wanted[r.region] ?? r.routingControl }));
    // A fence may take the last region out (that is what fencing the only writer means); the
    // control panel's own safety rules still have the last word.
    if (!opts.allowNoneOn && !after.some((r) => r.routingControl === 'On')) {
      throw ApplicationFailure.nonRetryable(
        `refusing to ${why} for service ${this.service.name}: every routing control would be Off and no region would receive traffic`,
        'NothingToShift',
      );
    }
    await this.onAnyEndpoint('UpdateRoutingControlStates', (c) =>
      c.send(new UpdateRoutingControlStatesCommand({ UpdateRoutingControlStateEntries: entries })),
    );
    return { before, after: await this.read(), maxCachedSeconds: this.traffic.ttl, changed: true };
  }

  destroy(): void {
    for (const c of this.clients) c.client.destroy();
  }
}

function arcHint(err: unknown): string | undefined {
  const code = (err as { name?: string }).name;
  if (code === 'ValidationException')
    return 'the change was refused, possibly by a safety rule of the control panel: check its rules (aws route53-recovery-control-config list-safety-rules)';
  if (code === 'ConflictException') return 'another change to these routing controls was in progress; the run retries';
  if (code === 'AccessDeniedException')
    return "grant the worker's role route53-recovery-cluster:GetRoutingControlState and UpdateRoutingControlStates (iam/region-worker-policy.json)";
  if (code === 'ResourceNotFoundException')
    return 'check traffic.routingControls in the config against the control panel';
  return undefined;
}

export function createArcActivities(config: Config, options: ArcOptions = {}): ArcActivities {
  const of = perService(config, {
    worker: 'this worker',
    mismatch: (svc) =>
      svc.traffic.provider === 'route53-arc'
        ? undefined
        : `steers traffic with ${svc.traffic.provider}, not Route 53 ARC`,
    // mismatch let only route53-arc services through
    make: (svc) => new RoutingControls(svc, svc.traffic as Route53ArcTraffic, options.env),
    failureTypes: { unknown: 'UnknownService', wrongProvider: 'ArcConfig' },
  });
  const known = (c: RoutingControls, ...regions: (string | undefined)[]): void => {
    for (const region of regions) {
      if (region !== undefined && !c.service.regions.includes(region)) {
        throw ApplicationFailure.nonRetryable(
          `region ${region} is not a region of service ${c.service.name} (${c.service.regions.join(', ')})`,
          'UnknownRegion',
        );
      }
    }
  };

  return {
    async trafficDescribe({ service }: ServiceRef): Promise<TrafficState> {
      return of(service).read();
    },
    async trafficShift({ service, from, to }: ShiftInput): Promise<ShiftResult> {
      const c = of(service);
      known(c, from, to);
      if (from === to)
        throw ApplicationFailure.nonRetryable(
          `cannot shift traffic of service ${service} from ${from} to itself`,
          'InvalidShift',
        );
      return c.set({ [to]: 'On', [from]: 'Off' }, `shift traffic from ${from} to ${to}`);
    },
    async trafficDrain({ service, region, to }: DrainInput): Promise<ShiftResult> {
      const c = of(service);
      known(c, region, to);
      return c.set({ ...(to ? { [to]: 'On' as const } : {}), [region]: 'Off' }, `drain ${region}`);
    },
    async trafficUndrain({ service, region }: UndrainInput): Promise<ShiftResult> {
      const c = of(service);
      known(c, region);
      return c.set({ [region]: 'On' }, `undrain ${region}`);
    },
    async trafficRestore({ service, state }: RestoreInput): Promise<TrafficState> {
      const c = of(service);
      const wanted: Record<string, ControlState> = {};
      const problems: string[] = [];
      for (const rec of state.records) {
        if (rec.routingControl !== 'On' && rec.routingControl !== 'Off')
          problems.push(`record ${rec.region}: no routing control state`);
        else if (!c.service.regions.includes(rec.region))
          problems.push(`record ${rec.region}: not a region of the service`);
        else if (rec.target !== c.arnOf(rec.region))
          problems.push(
            `record ${rec.region}: routing control ${rec.target} is not the configured ${c.arnOf(rec.region)}`,
          );
        else wanted[rec.region] = rec.routingControl;
      }
      if (problems.length > 0)
        throw ApplicationFailure.nonRetryable(
          `cannot restore traffic of service ${service}: ${problems.join('; ')}`,
          'InvalidTrafficState',
        );
      return (await c.set(wanted, 'restore routing controls')).after;
    },
  };
}
