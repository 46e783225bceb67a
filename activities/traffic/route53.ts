// The Route 53 traffic provider: describe, shift, drain and restore the record set that steers a
// service's clients between regions, all of them CNAMEs to a region's endpoint:
// - weighted and failover routing: one record per region, told apart by SetIdentifier (= region);
// - geolocation routing: one record per location (SetIdentifier geo-<location>), each answering
//   with the endpoint of the region configured for it; which region a record serves is read
//   from its target;
// - weighted routing with geolocation in front (traffic.weightedRecordName): the weighted records
//   live under weightedRecordName, and recordName holds geolocation records for the locations
//   kept on a region (the EU on eu-west-1) plus a default location that answers with
//   weightedRecordName. The default is structure, set when seeding and checked on every read; the
//   other locations appear in TrafficState.records beside the weighted ones.
//
// Behaviour taken from the AWS Route 53 API reference / developer guide (not from moto, which is
// laxer on most of these points):
// - The Route 53 API is global and signed for us-east-1.
// - ChangeResourceRecordSets applies a batch atomically: all changes or none. UPSERT creates the
//   record set (name, type, SetIdentifier) when absent and replaces it whole when present; DELETE
//   must repeat every value of the record set exactly; DELETE then CREATE of the same set in one
//   batch is how a record's routing policy is changed.
// - A change is PENDING until every authoritative server has it, then GetChange says INSYNC.
// - ListResourceRecordSets lists in order of name (labels reversed), then type, then
//   SetIdentifier; a truncated page names where to resume with NextRecordName/Type/Identifier.
// - ListHostedZonesByName lists zones in name order starting at DNSName; zone names need not be
//   unique (a public and a private zone, say).
// - Weights are integers 0..255; when every record of a weighted set has weight 0, Route 53
//   answers with all of them with equal probability. A failover set holds at most one PRIMARY and
//   one SECONDARY. A CNAME holds exactly one value.
// - A geolocation record names a continent, a country (optionally a subdivision) or the default
//   location (CountryCode "*"); Route 53 answers with the most specific match, and with no answer
//   when nothing matches and there is no default record.
import {
  ChangeResourceRecordSetsCommand,
  CreateHostedZoneCommand,
  GetChangeCommand,
  ListHostedZonesByNameCommand,
  ListResourceRecordSetsCommand,
  Route53Client,
  type Change,
  type GeoLocation as R53GeoLocation,
  type ListResourceRecordSetsCommandInput,
  type ResourceRecordSet,
} from '@aws-sdk/client-route-53';
import { heartbeat } from '../context';
import { ApplicationFailure } from '@temporalio/common';
import { knownService, wrongProvider } from '../per-service';
import { randomUUID } from 'node:crypto';
import type { Config, GeoLocation, Route53Traffic, Service } from '../../src/lib/config/schema';
import {
  drainedWeights,
  MAX_WEIGHT,
  primaryRegionOf,
  recordKey,
  sameRecord,
  sameTraffic,
  undrainedWeights,
} from '../../src/contract/traffic/plan';
import { frontDrain, geoDrain } from '../../src/contract/traffic/geo-drain';
import type { ResidencyRule } from '../../src/contract/policy/residency';
import { awsClientConfig } from '../aws/clients';
import type {
  DrainInput,
  KeptLocation,
  RegionActivities,
  RestoreInput,
  ServiceRef,
  ShiftInput,
  ShiftResult,
  TrafficRecord,
  TrafficState,
  UndrainInput,
} from '../../src/contract/activities';

export type Route53Activities = Pick<
  RegionActivities,
  'trafficDescribe' | 'trafficShift' | 'trafficRestore' | 'trafficDrain' | 'trafficUndrain'
>;

export interface Route53Options {
  /** The worker's environment; only read to decide whether the local stack needs dummy credentials. */
  env?: NodeJS.ProcessEnv;
}

const INSYNC_POLL_MS = 200;
const INSYNC_DEADLINE_MS = 60_000;
/** AWS errors that a retry cannot fix: the request itself is malformed, names nothing, or is not allowed. */
const NON_RETRYABLE_AWS_ERRORS = new Set([
  'InvalidInput',
  'InvalidDomainName',
  'NoSuchHostedZone',
  'InvalidArgument',
  'AccessDenied',
  'AccessDeniedException',
  'InvalidChangeBatch',
  'NoSuchGeoLocation',
]);

/** A Route 53 client built from the worker's own environment: credentials never travel in inputs. */
export function createRoute53Client(traffic: Route53Traffic, env: NodeJS.ProcessEnv = process.env): Route53Client {
  // The Route 53 API is global and signed for us-east-1 (its control plane lives there).
  return new Route53Client(
    awsClientConfig({ region: 'us-east-1', endpointUrl: traffic.endpointUrl, roleArn: traffic.roleArn }, env),
  );
}

export function createRoute53Activities(config: Config, options: Route53Options = {}): Route53Activities {
  const env = options.env ?? process.env;
  // One client per endpoint and role: services sharing AWS (or one moto) share connections.
  const clients = new Map<string, Route53Client>();
  const clientFor = (traffic: Route53Traffic): Route53Client => {
    const key = `${traffic.endpointUrl ?? ''}|${traffic.roleArn ?? ''}`;
    let client = clients.get(key);
    if (!client) {
      client = createRoute53Client(traffic, env);
      clients.set(key, client);
    }
    return client;
  };
  const target = (service: string): Target => {
    const svc = findService(config, service);
    const traffic = requireRoute53(svc);
    return { service: svc, traffic, client: clientFor(traffic) };
  };

  /** Writes `desired` over `current` (only the records that differ) and reports before and after. */
  async function apply(
    t: Target,
    zoneId: string,
    current: RecordSetView,
    desired: TrafficRecord[],
    comment: string,
  ): Promise<ShiftResult> {
    const before = current.state;
    const changedRecords = desired.filter((rec) => !sameRecord(rec, recordFor(before, recordKey(rec))));
    if (changedRecords.length === 0) {
      // A retry after a crash lands here seconds after the real change, so the cache bound
      // still matters to whoever waits on it.
      return { before, after: before, maxCachedSeconds: maxTtl(before.records), changed: false };
    }
    const changes = changedRecords.map((rec): Change => ({
      Action: 'UPSERT',
      ResourceRecordSet: toRecordSet(t, current, rec),
    }));
    const changeId = await applyChanges(t, zoneId, changes, comment);
    const after = (await readRecordSet(t, zoneId)).state;
    // Clients may hold the old answer of any record that changed for its TTL (and the old TTL).
    const ttls = changedRecords.flatMap((rec) =>
      [rec, recordFor(before, recordKey(rec))].filter((r): r is TrafficRecord => r !== undefined),
    );
    return { before, after, changeId, maxCachedSeconds: maxTtl(ttls), changed: true };
  }

  return {
    async trafficDescribe({ service }: ServiceRef): Promise<TrafficState> {
      const t = target(service);
      return (await readRecordSet(t, await requireZoneId(t))).state;
    },

    async trafficShift({ service, from, to }: ShiftInput): Promise<ShiftResult> {
      const t = target(service);
      if (from === to) {
        throw ApplicationFailure.nonRetryable(
          `cannot shift traffic of service ${service} from ${from} to itself (record ${t.traffic.recordName}): name a different target region`,
          'InvalidShift',
        );
      }
      const zoneId = await requireZoneId(t);
      const current = await readRecordSet(t, zoneId);
      const before = current.state;
      const routing = checkRouting(t, before);
      for (const region of [from, to]) requireKnownRegion(t, before, region, routing);
      let desired: TrafficRecord[];
      let kept: KeptLocation[] = [];
      if (routing === 'weighted') {
        const { weighted, front } = layers(before);
        // The target comes back into service first, at its configured share (an earlier
        // failover away from it left it at 0, and a proportional drain gives 0 nothing); regions
        // drained on purpose stay at 0. Then the source's share moves as the drain mode says.
        const inService = t.traffic.weights ? undrainedWeights(weighted, t.traffic.weights, to) : undefined;
        const base = inService ? weighted.map((r) => ({ ...r, weight: inService.get(r.region) ?? 0 })) : weighted;
        const change = drainedWeights(base, from, to, t.traffic.drain);
        if (change.nothingToMove) {
          throw ApplicationFailure.nonRetryable(
            `cannot shift traffic of service ${t.service.name} from ${from} to ${to}: neither receives traffic (record ${t.traffic.recordName}: ${describeState(before)}); ` +
              `shift from the region that does`,
            'NothingToShift',
          );
        }
        const weightedAfter = weighted.map((r) => ({ ...r, weight: change.weights.get(r.region) ?? 0 }));
        ({ records: desired, kept } = withFront(config, t, weightedAfter, front, from, to));
      } else if (routing === 'failover') {
        desired = shiftFailover(before, from, to);
      } else {
        desired = repointGeo(t, before, from, to);
      }
      return withKept(
        await apply(t, zoneId, current, desired, `regionshift: shift ${service} traffic from ${from} to ${to}`),
        kept,
      );
    },

    async trafficDrain({ service, region, to }: DrainInput): Promise<ShiftResult> {
      const t = target(service);
      if (to === region)
        throw ApplicationFailure.nonRetryable(
          `cannot drain ${region} of service ${service} into itself: name another region as \`to\``,
          'InvalidShift',
        );
      const zoneId = await requireZoneId(t);
      const current = await readRecordSet(t, zoneId);
      const before = current.state;
      const routing = checkRouting(t, before);
      requireKnownRegion(t, before, region, routing);
      if (to !== undefined) requireKnownRegion(t, before, to, routing);
      let desired: TrafficRecord[];
      let kept: KeptLocation[] = [];
      if (routing === 'weighted') {
        const { weighted, front } = layers(before);
        if (t.traffic.drain === 'to-target' && to === undefined) {
          throw ApplicationFailure.nonRetryable(
            `cannot drain ${region} of service ${service}: traffic.drain is to-target, so name the region that takes its weight (\`to\`), or set traffic.drain: proportional`,
            'InvalidShift',
          );
        }
        const change = drainedWeights(weighted, region, to, t.traffic.drain);
        if ([...change.weights.values()].every((w) => w === 0)) {
          throw ApplicationFailure.nonRetryable(
            `cannot drain ${region} of service ${service}: it is the only region with traffic and no other region can take it`,
            'NothingToShift',
          );
        }
        const weightedAfter = weighted.map((r) => ({ ...r, weight: change.weights.get(r.region) ?? 0 }));
        ({ records: desired, kept } = withFront(config, t, weightedAfter, front, region, to));
      } else if (routing === 'failover') {
        const primary = before.records.find((r) => r.failover === 'PRIMARY');
        if (primary?.region !== region)
          return { before, after: before, maxCachedSeconds: maxTtl(before.records), changed: false };
        const other = to ?? before.records.find((r) => r.region !== region)?.region;
        if (!other)
          throw ApplicationFailure.nonRetryable(
            `cannot drain ${region} of service ${service}: no other region has a failover record`,
            'NothingToShift',
          );
        desired = shiftFailover(before, region, other);
      } else {
        // Locations with a residency rule (EU clients, by default) stay where the rule allows.
        const plan = geoDrain(before.records, region, t.service.regions, geoResidencyRules(config, t), to);
        if ('refused' in plan)
          throw ApplicationFailure.nonRetryable(
            `cannot drain ${region} of service ${service}: ${plan.refused}`,
            'ResidencyRefused',
          );
        desired = plan.records.map((r, i) =>
          r.region === before.records[i]!.region ? r : { ...r, target: endpointOf(t, r.region) },
        );
      }
      return withKept(await apply(t, zoneId, current, desired, `regionshift: drain ${region} of ${service}`), kept);
    },

    async trafficUndrain({ service, region }: UndrainInput): Promise<ShiftResult> {
      const t = target(service);
      const zoneId = await requireZoneId(t);
      const current = await readRecordSet(t, zoneId);
      const before = current.state;
      const routing = checkRouting(t, before);
      requireKnownRegion(t, before, region, routing);
      let desired: TrafficRecord[];
      if (routing === 'weighted') {
        if (!t.traffic.weights) {
          throw ApplicationFailure.nonRetryable(
            `cannot undrain ${region} of service ${service}: its share is not configured; set traffic.weights, or restore the state the drain recorded (trafficRestore with its \`before\`)`,
            'InvalidShift',
          );
        }
        const { weighted, front } = layers(before);
        const weights = undrainedWeights(weighted, t.traffic.weights, region);
        desired = [
          ...weighted.map((r) => ({ ...r, weight: weights.get(r.region) ?? 0 })),
          ...ownLocationsBack(t, front, region),
        ];
      } else if (routing === 'failover') {
        // A SECONDARY already takes traffic when the PRIMARY fails its health check; making it
        // PRIMARY again is a shift (trafficShift), not an undrain.
        return { before, after: before, maxCachedSeconds: maxTtl(before.records), changed: false };
      } else {
        desired = ownLocationsBack(t, before.records, region);
      }
      return apply(t, zoneId, current, desired, `regionshift: undrain ${region} of ${service}`);
    },

    async trafficRestore({ service, state }: RestoreInput): Promise<TrafficState> {
      const t = target(service);
      validateRestoreState(t, state);
      const zoneId = await requireZoneId(t);
      const current = await readRecordSet(t, zoneId);
      if (sameTraffic(state, current.state)) return current.state;
      const changes: Change[] = [];
      // Switching between routing policies cannot be an UPSERT (a name's records share one
      // routing policy), so the whole set is replaced by DELETE + CREATE in the same atomic batch.
      // Geolocation records in front of weighted ones keep their kind; only the layer behind can change it.
      const front = (rec: TrafficRecord): boolean => isLayered(t) && rec.location !== undefined;
      const restoring = kindOf(state.records.find((rec) => !front(rec)) ?? state.records[0]!);
      const kindChanges = current.state.records.some((now) => !front(now) && kindOf(now) !== restoring);
      const wanted = new Set(state.records.map(recordKey));
      current.state.records.forEach((now, i) => {
        if ((kindChanges && !front(now)) || !wanted.has(recordKey(now)))
          changes.push({ Action: 'DELETE', ResourceRecordSet: current.raw[i]! });
      });
      for (const rec of state.records) {
        if (kindChanges && !front(rec)) {
          changes.push({ Action: 'CREATE', ResourceRecordSet: toRecordSet(t, current, rec) });
        } else if (!sameRecord(rec, recordFor(current.state, recordKey(rec)))) {
          changes.push({ Action: 'UPSERT', ResourceRecordSet: toRecordSet(t, current, rec) });
        }
      }
      await applyChanges(t, zoneId, changes, `regionshift: restore ${service} traffic to ${describeState(state)}`);
      return (await readRecordSet(t, zoneId)).state;
    },
  };
}

export interface EnsureResult {
  hostedZoneId: string;
  zoneCreated: boolean;
  recordsCreated: boolean;
  state: TrafficState;
}

/**
 * Seeds the local stack (demo, tests): the hosted zone, by name, when none has that name, and the
 * service's initial records when its record name has none. Records that exist are left alone:
 * they may be the result of a failover.
 */
export async function ensureTrafficRecords(
  config: Config,
  service: string,
  primaryRegion: string,
  options: Route53Options = {},
): Promise<EnsureResult> {
  const svc = findService(config, service);
  const traffic = requireRoute53(svc);
  if (!svc.regions.includes(primaryRegion)) {
    throw ApplicationFailure.nonRetryable(
      `cannot seed traffic for service ${service}: primary region ${primaryRegion} is not one of its regions (${svc.regions.join(', ')})`,
      'UnknownRegion',
    );
  }
  const initial = initialRecords(svc, traffic, primaryRegion);
  const client = createRoute53Client(traffic, options.env ?? process.env);
  try {
    const t: Target = { service: svc, traffic, client };
    let zoneId = await findZoneId(t);
    let zoneCreated = false;
    if (zoneId === undefined) {
      if (looksLikeZoneId(traffic.hostedZone)) {
        throw ApplicationFailure.nonRetryable(
          `hosted zone ${traffic.hostedZone} of service ${service} does not exist; a zone given by id cannot be created`,
          'NoSuchHostedZone',
        );
      }
      const created = await aws(t, 'CreateHostedZone', () =>
        client.send(
          new CreateHostedZoneCommand({
            Name: fqdn(traffic.hostedZone),
            CallerReference: `regionshift-${randomUUID()}`,
          }),
        ),
      );
      zoneId = stripZonePrefix(created.HostedZone?.Id ?? '');
      zoneCreated = true;
    }
    const current = await readRecordSet(t, zoneId);
    if (current.state.records.length > 0)
      return { hostedZoneId: zoneId, zoneCreated, recordsCreated: false, state: current.state };
    // CREATE rather than UPSERT: if another seeder won the race the batch fails instead of
    // overwriting, and the records it wrote are what we report.
    const changes = initial.map((rec): Change => ({
      Action: 'CREATE',
      ResourceRecordSet: toRecordSet(t, current, rec),
    }));
    if (isLayered(t)) changes.push({ Action: 'CREATE', ResourceRecordSet: defaultBehindFront(traffic) });
    try {
      await applyChanges(t, zoneId, changes, `regionshift: seed ${service} traffic, primary ${primaryRegion}`);
    } catch (err) {
      const now = await readRecordSet(t, zoneId);
      if (now.state.records.length === 0) throw err;
      return { hostedZoneId: zoneId, zoneCreated, recordsCreated: false, state: now.state };
    }
    return { hostedZoneId: zoneId, zoneCreated, recordsCreated: true, state: (await readRecordSet(t, zoneId)).state };
  } finally {
    client.destroy();
  }
}

/** The region that receives writes: weighted, the highest weight above 0; failover, the PRIMARY; geolocation, the default's. */
export function currentPrimaryRegion(state: TrafficState): string | undefined {
  return primaryRegionOf(state);
}

// ---------------------------------------------------------------------------------------------

interface Target {
  service: Service;
  traffic: Route53Traffic;
  client: Route53Client;
}

type Routing = Route53Traffic['routing'];

/** The records as Route 53 holds them (DELETE must repeat them exactly) and as the contract names them. */
interface RecordSetView {
  /** The name as Route 53 spells it, reused on writes so a write never creates a look-alike. */
  name: string;
  /** Where weighted records are written: weightedRecordName when geolocation stands in front, else `name`. */
  weightedName: string;
  /** Same order as state.records. */
  raw: ResourceRecordSet[];
  state: TrafficState;
}

function findService(config: Config, service: string): Service {
  return knownService(config, service, 'this worker', 'UnknownService');
}

function requireRoute53(svc: Service): Route53Traffic {
  if (svc.traffic.provider !== 'route53')
    throw wrongProvider(
      svc.name,
      `steers traffic with ${svc.traffic.provider}, not Route 53 records`,
      'UnknownService',
    );
  return svc.traffic;
}

/** Route 53 answers names lowercase with a trailing dot and escapes some characters as \ddd. */
function normalizeName(name: string): string {
  const decoded = name.replace(/\\(\d{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
  return fqdn(decoded).toLowerCase();
}

function fqdn(name: string): string {
  return name.endsWith('.') ? name : `${name}.`;
}

function sameName(a: string | undefined, b: string): boolean {
  return a !== undefined && normalizeName(a) === normalizeName(b);
}

function looksLikeZoneId(hostedZone: string): boolean {
  return /^(\/hostedzone\/)?[A-Z0-9]+$/.test(hostedZone);
}

function stripZonePrefix(id: string): string {
  return id.replace(/^\/hostedzone\//, '');
}

async function aws<T>(t: Target, operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    const e = err instanceof Error ? err : new Error(String(err));
    // Keep the AWS error name as the failure type so a retry policy can list it; most AWS errors
    // (throttling, PriorRequestNotComplete, a DELETE racing another writer) heal on retry.
    throw ApplicationFailure.create({
      message:
        `Route 53 ${operation} for service ${t.service.name} (zone ${t.traffic.hostedZone}, record ${t.traffic.recordName}` +
        `${t.traffic.endpointUrl ? `, endpoint ${t.traffic.endpointUrl}` : ''}) failed: ${e.name}: ${e.message}`,
      type: e.name,
      nonRetryable: NON_RETRYABLE_AWS_ERRORS.has(e.name),
      cause: e,
    });
  }
}

async function findZoneId(t: Target): Promise<string | undefined> {
  const { hostedZone } = t.traffic;
  if (looksLikeZoneId(hostedZone)) return stripZonePrefix(hostedZone);
  const found: string[] = [];
  let dnsName: string | undefined = fqdn(hostedZone);
  let zoneId: string | undefined;
  for (;;) {
    const page = await aws(t, 'ListHostedZonesByName', () =>
      t.client.send(new ListHostedZonesByNameCommand({ DNSName: dnsName, HostedZoneId: zoneId })),
    );
    const zones = page.HostedZones ?? [];
    for (const zone of zones) if (sameName(zone.Name, hostedZone)) found.push(stripZonePrefix(zone.Id ?? ''));
    // Zones come in name order, so once a page ends past our name there is nothing more to see.
    const last = zones[zones.length - 1];
    if (!page.IsTruncated || !sameName(page.NextDNSName, hostedZone) || (last && !sameName(last.Name, hostedZone)))
      break;
    dnsName = page.NextDNSName;
    zoneId = page.NextHostedZoneId;
  }
  if (found.length > 1) {
    throw ApplicationFailure.nonRetryable(
      `service ${t.service.name}: ${found.length} hosted zones are named ${hostedZone} (${found.join(', ')}); put the zone id in traffic.hostedZone`,
      'AmbiguousHostedZone',
    );
  }
  return found[0];
}

async function requireZoneId(t: Target): Promise<string> {
  const id = await findZoneId(t);
  if (id === undefined) {
    throw ApplicationFailure.nonRetryable(
      `service ${t.service.name}: no hosted zone named ${t.traffic.hostedZone}` +
        `${t.traffic.endpointUrl ? ` at ${t.traffic.endpointUrl}` : ''}; create it (regionshift seeds it in the local stack) or fix traffic.hostedZone`,
      'NoSuchHostedZone',
    );
  }
  return id;
}

async function readRecordSet(t: Target, zoneId: string): Promise<RecordSetView> {
  const recordName = t.traffic.recordName;
  const weightedName = t.traffic.weightedRecordName;
  let raw = await listRecordSets(t, zoneId, recordName);
  const name = raw[0]?.Name ?? fqdn(recordName).toLowerCase();
  let weightedRaw: ResourceRecordSet[] = [];
  if (isLayered(t) && weightedName !== undefined) {
    weightedRaw = await listRecordSets(t, zoneId, weightedName);
    const defaults = raw.filter((rr) => rr.GeoLocation?.CountryCode === '*');
    raw = raw.filter((rr) => !defaults.includes(rr));
    const pointsBehind =
      defaults.length === 1 &&
      sameName(defaults[0]!.ResourceRecords?.[0]?.Value, weightedName) &&
      !defaults[0]!.AliasTarget;
    if ((raw.length > 0 || weightedRaw.length > 0 || defaults.length > 0) && !pointsBehind) {
      throw ApplicationFailure.nonRetryable(
        `Route 53 record ${recordName} of service ${t.service.name} needs one geolocation default record, a CNAME to ${weightedName} (the weighted records), ` +
          `so clients outside the listed locations get an answer; it has ${defaults.map((d) => `${d.Type ?? '?'} → ${d.ResourceRecords?.[0]?.Value ?? d.AliasTarget?.DNSName ?? '?'}`).join(', ') || 'none'}. ` +
          `Fix that record in zone ${t.traffic.hostedZone}.`,
        'UnmappableRecord',
      );
    }
  }
  const pairs = [...raw, ...weightedRaw].map((rr) => ({ rr, rec: toTrafficRecord(t, rr) }));
  const regionOrder = (region: string): number => {
    const i = t.service.regions.indexOf(region);
    return i === -1 ? Number.MAX_SAFE_INTEGER : i;
  };
  const rules = (t.traffic.geolocation ?? []).map((rule) => geoLabel(rule.location));
  const locationOrder = (location: string): number => {
    const i = rules.indexOf(location);
    return i === -1 ? Number.MAX_SAFE_INTEGER : i;
  };
  // Weighted records first, then the locations in front of them, each in the config's order.
  pairs.sort((a, b) =>
    a.rec.location !== undefined && b.rec.location !== undefined
      ? locationOrder(a.rec.location) - locationOrder(b.rec.location) || a.rec.location.localeCompare(b.rec.location)
      : a.rec.location !== undefined || b.rec.location !== undefined
        ? a.rec.location !== undefined
          ? 1
          : -1
        : regionOrder(a.rec.region) - regionOrder(b.rec.region) || a.rec.region.localeCompare(b.rec.region),
  );
  const weightedSpelled =
    weightedRaw[0]?.Name ?? (weightedName !== undefined ? fqdn(weightedName).toLowerCase() : name);
  return {
    name,
    weightedName: weightedSpelled,
    raw: pairs.map((p) => p.rr),
    state: { recordName, records: pairs.map((p) => p.rec) },
  };
}

/** Every record set under one name, paging as Route 53 does. */
async function listRecordSets(t: Target, zoneId: string, recordName: string): Promise<ResourceRecordSet[]> {
  const raw: ResourceRecordSet[] = [];
  const seen = new Set<string>();
  // Lowercase: Route 53 compares names case-insensitively, moto compares the raw strings.
  let start: Pick<ListResourceRecordSetsCommandInput, 'StartRecordName' | 'StartRecordType' | 'StartRecordIdentifier'> =
    {
      StartRecordName: fqdn(recordName).toLowerCase(),
    };
  for (;;) {
    const page = await aws(t, 'ListResourceRecordSets', () =>
      t.client.send(new ListResourceRecordSetsCommand({ HostedZoneId: zoneId, ...start })),
    );
    let pastOurName = false;
    for (const rr of page.ResourceRecordSets ?? []) {
      // Listing starts at our name; the first other name means all of ours have been seen.
      if (!sameName(rr.Name, recordName)) {
        pastOurName = true;
        break;
      }
      const key = `${rr.Type}|${rr.SetIdentifier ?? ''}`;
      if (!seen.has(key)) {
        seen.add(key);
        raw.push(rr);
      }
    }
    if (pastOurName || !page.IsTruncated || !sameName(page.NextRecordName, recordName)) break;
    const next = {
      StartRecordName: page.NextRecordName,
      StartRecordType: page.NextRecordType,
      StartRecordIdentifier: page.NextRecordIdentifier,
    };
    if (
      next.StartRecordType === start.StartRecordType &&
      next.StartRecordIdentifier === start.StartRecordIdentifier &&
      next.StartRecordName === start.StartRecordName
    ) {
      // An endpoint that ignores StartRecordIdentifier (moto does) would hand back this page forever.
      throw ApplicationFailure.retryable(
        `Route 53 listing of ${recordName} for service ${t.service.name} did not advance past ${next.StartRecordName} ${next.StartRecordType ?? ''}`,
        'PaginationStuck',
      );
    }
    start = next;
  }
  return raw;
}

function toTrafficRecord(t: Target, rr: ResourceRecordSet): TrafficRecord {
  const refuse = (why: string): never => {
    throw ApplicationFailure.nonRetryable(
      `Route 53 record ${rr.Name ?? '?'} ${rr.Type ?? '?'} (SetIdentifier ${rr.SetIdentifier ?? 'none'}) of service ${t.service.name} ` +
        `cannot be managed by regionshift: ${why}. Fix or remove that record in zone ${t.traffic.hostedZone}.`,
      'UnmappableRecord',
    );
  };
  if (rr.Type !== 'CNAME')
    return refuse(`it is a ${rr.Type ?? 'typeless'} record, regionshift manages CNAMEs to the regions' endpoints`);
  if (!rr.SetIdentifier)
    return refuse('it has no SetIdentifier, which names the region (or, geolocation, the location)');
  if (rr.AliasTarget) return refuse('alias records are not supported');
  const values = rr.ResourceRecords ?? [];
  if (values.length !== 1 || !values[0]?.Value)
    return refuse(`a CNAME needs exactly one value, it has ${values.length}`);
  if (rr.TTL === undefined) return refuse('it has no TTL');
  const policies = [rr.Weight !== undefined, rr.Failover !== undefined, rr.GeoLocation !== undefined].filter(
    Boolean,
  ).length;
  if (policies !== 1) return refuse('it needs exactly one of a Weight, a Failover role or a GeoLocation');
  const value = values[0].Value;
  if (rr.GeoLocation) {
    const location = labelOfR53(rr.GeoLocation);
    if (!location)
      return refuse(`its GeoLocation ${JSON.stringify(rr.GeoLocation)} names no continent, country or default`);
    const region = regionOfTarget(t, value);
    if (!region)
      return refuse(
        `its target ${value} is none of the service's endpoints (${Object.entries(t.traffic.endpoints)
          .map(([r, e]) => `${r}: ${e}`)
          .join(', ')})`,
      );
    return { region, target: value, location, ttl: rr.TTL };
  }
  const rec: TrafficRecord = { region: rr.SetIdentifier, target: value, ttl: rr.TTL };
  if (rr.Weight !== undefined) rec.weight = rr.Weight;
  if (rr.Failover !== undefined) {
    if (rr.Failover !== 'PRIMARY' && rr.Failover !== 'SECONDARY')
      return refuse(`unknown failover role ${String(rr.Failover)}`);
    rec.failover = rr.Failover;
  }
  return rec;
}

function kindOf(rec: TrafficRecord): Routing {
  return rec.weight !== undefined ? 'weighted' : rec.failover !== undefined ? 'failover' : 'geolocation';
}

function rawFor(view: RecordSetView, key: string): ResourceRecordSet | undefined {
  const i = view.state.records.findIndex((r) => recordKey(r) === key);
  return i === -1 ? undefined : view.raw[i];
}

/** A record to write, keeping what the contract does not model (health checks) from the live record. */
function toRecordSet(t: Target, view: RecordSetView, rec: TrafficRecord): ResourceRecordSet {
  const live = rawFor(view, recordKey(rec));
  const { Weight: _w, Failover: _f, GeoLocation: _g, TTL: _t, ResourceRecords: _r, ...kept } = live ?? {};
  const kindKept = live && kindOf(rec) === kindOf(view.state.records[view.raw.indexOf(live)]!);
  return {
    ...kept,
    Name: rec.location === undefined ? view.weightedName : view.name,
    Type: 'CNAME',
    SetIdentifier:
      kindKept && live?.SetIdentifier
        ? live.SetIdentifier
        : rec.location !== undefined
          ? geoSetIdentifier(rec.location)
          : rec.region,
    TTL: rec.ttl,
    ResourceRecords: [{ Value: rec.target }],
    ...(rec.weight !== undefined ? { Weight: rec.weight } : {}),
    ...(rec.failover !== undefined ? { Failover: rec.failover } : {}),
    ...(rec.location !== undefined ? { GeoLocation: r53OfLabel(t, rec.location) } : {}),
  };
}

function recordFor(state: TrafficState, key: string): TrafficRecord | undefined {
  return state.records.find((r) => recordKey(r) === key);
}

function maxTtl(records: TrafficRecord[]): number {
  return records.reduce((max, r) => Math.max(max, r.ttl), 0);
}

function describeState(state: TrafficState): string {
  return state.records
    .map(
      (r) =>
        `${r.location !== undefined ? `${r.location}→` : ''}${r.region}${r.location !== undefined ? '' : `=${r.weight ?? r.failover}`}`,
    )
    .join(' ');
}

function requireKnownRegion(t: Target, state: TrafficState, region: string, routing: Routing): void {
  const inConfig = t.service.regions.includes(region);
  // A geolocation region may answer no location right now (it takes over when another drains).
  const inRecords = routing === 'geolocation' || state.records.some((r) => r.region === region);
  if (inConfig && inRecords) return;
  const where =
    !inConfig && !inRecords
      ? 'neither a region of the service nor in its records'
      : !inConfig
        ? 'not a region of the service in the config'
        : 'in the config but has no record';
  throw ApplicationFailure.nonRetryable(
    `cannot shift traffic of service ${t.service.name}: region ${region} is ${where} (record ${t.traffic.recordName} has ` +
      `${[...new Set(state.records.map((r) => r.region))].join(', ') || 'no records'}; config regions ${t.service.regions.join(', ')})`,
    'UnknownRegion',
  );
}

/** The routing the live records use, which must be the one the config says. */
function checkRouting(t: Target, state: TrafficState): Routing {
  // In front of weighted records, the geolocation ones live under a name of their own.
  const kinds = new Set((isLayered(t) ? layers(state).weighted : state.records).map(kindOf));
  if (kinds.size > 1) {
    throw ApplicationFailure.nonRetryable(
      `record ${t.traffic.recordName} of service ${t.service.name} mixes ${[...kinds].join(' and ')} records; Route 53 should not allow this, fix the zone by hand`,
      'UnmappableRecord',
    );
  }
  const routing = [...kinds][0] ?? t.traffic.routing;
  if (routing !== t.traffic.routing) {
    throw ApplicationFailure.nonRetryable(
      `record ${t.traffic.recordName} of service ${t.service.name} uses ${routing} routing but the config says ${t.traffic.routing}: ` +
        `fix traffic.routing or migrate the records (trafficRestore) before shifting`,
      'RoutingMismatch',
    );
  }
  return routing;
}

function shiftFailover(state: TrafficState, from: string, to: string): TrafficRecord[] {
  return state.records.map((r) =>
    r.region === to
      ? { ...r, failover: 'PRIMARY' as const }
      : r.region === from
        ? { ...r, failover: 'SECONDARY' as const }
        : r,
  );
}

/** Every location `from` answers is answered by `to`; the other locations keep their region. */
function repointGeo(t: Target, state: TrafficState, from: string, to: string): TrafficRecord[] {
  return state.records.map((r) => (r.region === from ? { ...r, region: to, target: endpointOf(t, to) } : r));
}

/** Whether geolocation records stand in front of the weighted ones (traffic.weightedRecordName). */
function isLayered(t: Target): boolean {
  return t.traffic.routing === 'weighted' && t.traffic.weightedRecordName !== undefined;
}

/** The weighted records, and the geolocation records in front of them. */
function layers(state: TrafficState): { weighted: TrafficRecord[]; front: TrafficRecord[] } {
  return {
    weighted: state.records.filter((r) => r.location === undefined),
    front: state.records.filter((r) => r.location !== undefined),
  };
}

/**
 * The weighted records as changed, with the front's locations that `from` answered moved to `to`
 * or to the next region their residency allows among those still weighted in; a location no
 * region may take stays, and is returned in `kept`.
 */
function withFront(
  config: Config,
  t: Target,
  weighted: TrafficRecord[],
  front: TrafficRecord[],
  from: string,
  to: string | undefined,
): { records: TrafficRecord[]; kept: KeptLocation[] } {
  if (front.length === 0) return { records: weighted, kept: [] };
  const serving = t.service.regions.filter((r) => weighted.some((w) => w.region === r && (w.weight ?? 0) > 0));
  const fallback = to ?? primaryRegionOf({ recordName: t.traffic.recordName, records: weighted }) ?? serving[0]!;
  const plan = frontDrain(front, from, serving, geoResidencyRules(config, t), fallback);
  const moved = plan.records.map((r, i) =>
    r.region === front[i]!.region ? r : { ...r, target: endpointOf(t, r.region) },
  );
  return { records: [...weighted, ...moved], kept: plan.kept };
}

function withKept(result: ShiftResult, kept: KeptLocation[]): ShiftResult {
  return kept.length > 0 ? { ...result, kept } : result;
}

/** The locations configured for `region` answered by it again; the others as they are. */
function ownLocationsBack(t: Target, records: TrafficRecord[], region: string): TrafficRecord[] {
  const own = new Set(
    (t.traffic.geolocation ?? [])
      .filter((rule) => rule.region === region && rule.location !== 'default')
      .map((rule) => geoLabel(rule.location)),
  );
  return records.map((r) =>
    r.location !== undefined && own.has(r.location) ? { ...r, region, target: endpointOf(t, region) } : r,
  );
}

function endpointOf(t: Target, region: string): string {
  const endpoint = t.traffic.endpoints[region];
  if (!endpoint) {
    throw ApplicationFailure.nonRetryable(
      `service ${t.service.name} has no traffic endpoint for region ${region}; add traffic.endpoints.${region}`,
      'UnknownRegion',
    );
  }
  return endpoint;
}

function regionOfTarget(t: Target, value: string): string | undefined {
  return Object.entries(t.traffic.endpoints).find(([, endpoint]) => sameName(endpoint, value))?.[0];
}

/** Per location label, the residency class its geolocation rule names, resolved from the config. */
function geoResidencyRules(config: Config, t: Target): Record<string, ResidencyRule | undefined> {
  return Object.fromEntries(
    (t.traffic.geolocation ?? []).map((rule) => {
      const cls = rule.residency === undefined ? undefined : config.residency?.classes[rule.residency];
      return [
        geoLabel(rule.location),
        cls && rule.residency
          ? { class: rule.residency, allowedRegions: cls.allowedRegions, allowOutside: cls.allowOutside }
          : undefined,
      ];
    }),
  );
}

/** default, continent:EU, country:DE, country:US-CA: what a location is called in TrafficRecord.location. */
export function geoLabel(location: GeoLocation): string {
  if (location === 'default') return 'default';
  if ('continent' in location) return `continent:${location.continent}`;
  return `country:${location.country}${location.subdivision ? `-${location.subdivision}` : ''}`;
}

function labelOfR53(geo: R53GeoLocation): string | undefined {
  if (geo.CountryCode === '*') return 'default';
  if (geo.ContinentCode) return `continent:${geo.ContinentCode}`;
  if (geo.CountryCode) return `country:${geo.CountryCode}${geo.SubdivisionCode ? `-${geo.SubdivisionCode}` : ''}`;
  return undefined;
}

function r53OfLabel(t: Target, label: string): R53GeoLocation {
  if (label === 'default') return { CountryCode: '*' };
  const m = /^(continent|country):([A-Z]{2})(?:-([A-Z0-9]{1,3}))?$/.exec(label);
  if (!m) {
    throw ApplicationFailure.nonRetryable(
      `service ${t.service.name}: "${label}" is not a location (default, continent:EU, country:DE, country:US-CA)`,
      'InvalidTrafficState',
    );
  }
  if (m[1] === 'continent') return { ContinentCode: m[2] };
  return { CountryCode: m[2], ...(m[3] ? { SubdivisionCode: m[3] } : {}) };
}

function geoSetIdentifier(label: string): string {
  return `geo-${label.replace(':', '-')}`;
}

/** The geolocation default in front of weighted records: everyone not listed gets the weights. */
function defaultBehindFront(traffic: Route53Traffic): ResourceRecordSet {
  return {
    Name: fqdn(traffic.recordName).toLowerCase(),
    Type: 'CNAME',
    SetIdentifier: geoSetIdentifier('default'),
    GeoLocation: { CountryCode: '*' },
    TTL: traffic.ttl,
    ResourceRecords: [{ Value: fqdn(traffic.weightedRecordName ?? '') }],
  };
}

function initialRecords(svc: Service, traffic: Route53Traffic, primaryRegion: string): TrafficRecord[] {
  const record = (region: string): TrafficRecord => ({
    region,
    target: traffic.endpoints[region] ?? '',
    ttl: traffic.ttl,
  });
  if (traffic.routing === 'weighted') {
    const configured = traffic.weights;
    const weighted = svc.regions.map((region) => ({
      ...record(region),
      weight: configured ? (configured[region] ?? 0) : region === primaryRegion ? 100 : 0,
    }));
    const front = traffic.weightedRecordName
      ? (traffic.geolocation ?? []).map((rule) => ({ ...record(rule.region), location: geoLabel(rule.location) }))
      : [];
    return [...weighted, ...front];
  }
  if (traffic.routing === 'geolocation') {
    // The default location follows the writer; the others answer from the region configured for them.
    return (traffic.geolocation ?? []).map((rule) => {
      const region = rule.location === 'default' ? primaryRegion : rule.region;
      return { ...record(region), location: geoLabel(rule.location) };
    });
  }
  if (svc.regions.length !== 2) {
    throw ApplicationFailure.nonRetryable(
      `service ${svc.name} uses failover routing, which takes exactly two regions (a PRIMARY and a SECONDARY), but lists ${svc.regions.length}: ` +
        `${svc.regions.join(', ')}; use weighted routing or two regions`,
      'InvalidConfig',
    );
  }
  const secondary = svc.regions.find((r) => r !== primaryRegion) ?? '';
  return [
    { ...record(primaryRegion), failover: 'PRIMARY' },
    { ...record(secondary), failover: 'SECONDARY' },
  ];
}

function validateRestoreState(t: Target, state: TrafficState): void {
  const problems: string[] = [];
  if (!sameName(state.recordName, t.traffic.recordName))
    problems.push(`it is for record ${state.recordName}, the service's record is ${t.traffic.recordName}`);
  if (state.records.length === 0)
    problems.push('it has no records, and restoring it would take the service out of DNS');
  const keys = new Set<string>();
  for (const rec of state.records) {
    const at = rec.location !== undefined ? `record ${rec.location}` : `record ${rec.region || '(no region)'}`;
    if (!rec.region) problems.push(`${at}: no region`);
    if (keys.has(recordKey(rec))) problems.push(`${at}: listed twice`);
    keys.add(recordKey(rec));
    if (!rec.target) problems.push(`${at}: no target`);
    if (!Number.isInteger(rec.ttl) || rec.ttl < 0)
      problems.push(`${at}: TTL ${rec.ttl} is not a whole number of seconds`);
    const policies = [rec.weight !== undefined, rec.failover !== undefined, rec.location !== undefined].filter(
      Boolean,
    ).length;
    if (policies !== 1) problems.push(`${at}: needs exactly one of a weight, a failover role or a location`);
    if (rec.weight !== undefined && (!Number.isInteger(rec.weight) || rec.weight < 0 || rec.weight > MAX_WEIGHT))
      problems.push(`${at}: weight ${rec.weight} is not in 0..255`);
    if (rec.failover !== undefined && rec.failover !== 'PRIMARY' && rec.failover !== 'SECONDARY')
      problems.push(`${at}: failover ${String(rec.failover)} is not PRIMARY or SECONDARY`);
    if (rec.location !== undefined && !/^(default|(continent|country):[A-Z]{2}(-[A-Z0-9]{1,3})?)$/.test(rec.location))
      problems.push(`${at}: "${rec.location}" is not a location (default, continent:EU, country:DE, country:US-CA)`);
  }
  const layered = isLayered(t);
  const kinds = new Set((layered ? layers(state).weighted : state.records).map(kindOf));
  if (kinds.size > 1) problems.push(`it mixes ${[...kinds].join(' and ')} records`);
  if (layered && state.records.some((r) => r.location === 'default'))
    problems.push('in front of weighted records the default location is the weights, not a record of its own');
  for (const role of ['PRIMARY', 'SECONDARY'] as const) {
    if (state.records.filter((r) => r.failover === role).length > 1) problems.push(`it has more than one ${role}`);
  }
  if (!layered && kinds.has('geolocation') && !state.records.some((r) => r.location === 'default'))
    problems.push('it has no default location, so clients elsewhere would get no answer');
  if (problems.length > 0) {
    throw ApplicationFailure.nonRetryable(
      `cannot restore traffic of service ${t.service.name}: ${problems.join('; ')}`,
      'InvalidTrafficState',
    );
  }
}

async function applyChanges(t: Target, zoneId: string, changes: Change[], comment: string): Promise<string> {
  const res = await aws(t, 'ChangeResourceRecordSets', () =>
    t.client.send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: zoneId,
        ChangeBatch: { Comment: comment, Changes: changes },
      }),
    ),
  );
  const changeId = res.ChangeInfo?.Id ?? '';
  if (res.ChangeInfo?.Status !== 'INSYNC') await waitInSync(t, changeId, comment);
  return changeId;
}

async function waitInSync(t: Target, changeId: string, comment: string): Promise<void> {
  const deadline = Date.now() + INSYNC_DEADLINE_MS;
  for (;;) {
    const res = await aws(t, 'GetChange', () => t.client.send(new GetChangeCommand({ Id: changeId })));
    if (res.ChangeInfo?.Status === 'INSYNC') return;
    if (Date.now() >= deadline) {
      // Retryable: the change is already visible to the API, so a retried shift finds it done.
      throw ApplicationFailure.retryable(
        `Route 53 change ${changeId} (${comment}) is still ${res.ChangeInfo?.Status ?? 'unknown'} after ${INSYNC_DEADLINE_MS / 1000} s`,
        'ChangeNotInSync',
      );
    }
    heartbeat({ changeId, status: res.ChangeInfo?.Status });
    await new Promise((resolve) => setTimeout(resolve, INSYNC_POLL_MS));
  }
}
