// The Route 53 traffic provider: describe, shift and restore the record set that steers a
// service's clients between regions. One weighted or failover record per region, told apart by
// SetIdentifier (= region name), all of them CNAMEs to that region's endpoint.
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
import {
  ChangeResourceRecordSetsCommand,
  CreateHostedZoneCommand,
  GetChangeCommand,
  ListHostedZonesByNameCommand,
  ListResourceRecordSetsCommand,
  Route53Client,
  type Change,
  type ListResourceRecordSetsCommandInput,
  type ResourceRecordSet,
} from '@aws-sdk/client-route-53';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import type { Config, Route53Traffic, Service } from '../../src/config/schema';
import type { RegionActivities, RestoreInput, ServiceRef, ShiftInput, ShiftResult, TrafficRecord, TrafficState } from '../types';

export type Route53Activities = Pick<RegionActivities, 'trafficDescribe' | 'trafficShift' | 'trafficRestore'>;

export interface Route53Options {
  /** The worker's environment; only read to decide whether the local stack needs dummy credentials. */
  env?: NodeJS.ProcessEnv;
}

const MAX_WEIGHT = 255;
const INSYNC_POLL_MS = 200;
const INSYNC_DEADLINE_MS = 60_000;
/** AWS errors that a retry cannot fix: the request itself is malformed or names nothing. */
const NON_RETRYABLE_AWS_ERRORS = new Set(['InvalidInput', 'InvalidDomainName', 'NoSuchHostedZone', 'InvalidArgument']);

/** A Route 53 client built from the worker's own environment: credentials never travel in inputs. */
export function createRoute53Client(traffic: Route53Traffic, env: NodeJS.ProcessEnv = process.env): Route53Client {
  return new Route53Client({
    region: 'us-east-1',
    ...(traffic.endpointUrl ? { endpoint: traffic.endpointUrl } : {}),
    // The local stack (moto) accepts any signature but the SDK still needs *some* credentials to
    // sign with; without these it would walk the default chain to the instance metadata service
    // and fail after its timeouts on a laptop. Real credentials in the env are used as they are.
    ...(traffic.endpointUrl && !env.AWS_ACCESS_KEY_ID
      ? { credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } }
      : {}),
  });
}

export function createRoute53Activities(config: Config, options: Route53Options = {}): Route53Activities {
  const env = options.env ?? process.env;
  // One client per endpoint: services sharing AWS (or one moto) share connections.
  const clients = new Map<string, Route53Client>();
  const clientFor = (traffic: Route53Traffic): Route53Client => {
    const key = traffic.endpointUrl ?? '';
    let client = clients.get(key);
    if (!client) {
      client = createRoute53Client(traffic, env);
      clients.set(key, client);
    }
    return client;
  };
  const target = (service: string): Target => {
    const svc = findService(config, service);
    return { service: svc, traffic: svc.traffic, client: clientFor(svc.traffic) };
  };

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
      for (const region of [from, to]) requireKnownRegion(t, before, region);
      const routing = routingOf(t, before);
      if (routing !== t.traffic.routing) {
        throw ApplicationFailure.nonRetryable(
          `record ${t.traffic.recordName} of service ${service} uses ${routing} routing but the config says ${t.traffic.routing}: ` +
            `fix traffic.routing or migrate the records (trafficRestore) before shifting`,
          'RoutingMismatch',
        );
      }
      const desired = routing === 'weighted' ? shiftWeights(t, before, from, to) : shiftFailover(before, from, to);
      const changedRecords = desired.filter((rec) => !sameRecord(rec, recordFor(before, rec.region)));
      if (changedRecords.length === 0) {
        // A retry after a crash lands here seconds after the real change, so the cache bound
        // still matters to whoever waits on it.
        const involved = before.records.filter((r) => r.region === from || r.region === to);
        return { before, after: before, maxCachedSeconds: maxTtl(involved), changed: false };
      }
      const changes = changedRecords.map((rec): Change => ({ Action: 'UPSERT', ResourceRecordSet: toRecordSet(current, rec) }));
      const changeId = await applyChanges(t, zoneId, changes, `regionshift: shift ${service} traffic from ${from} to ${to}`);
      const after = (await readRecordSet(t, zoneId)).state;
      return { before, after, changeId, maxCachedSeconds: maxTtl(changedRecords), changed: true };
    },

    async trafficRestore({ service, state }: RestoreInput): Promise<TrafficState> {
      const t = target(service);
      validateRestoreState(t, state);
      const zoneId = await requireZoneId(t);
      const current = await readRecordSet(t, zoneId);
      if (sameState(current.state, state)) return current.state;
      const changes: Change[] = [];
      // Switching between weighted and failover cannot be an UPSERT (a name's records share one
      // routing policy), so the whole set is replaced by DELETE + CREATE in the same atomic batch.
      const restoresWeighted = state.records[0]?.weight !== undefined;
      const kindChanges = current.state.records.some((now) => (now.weight !== undefined) !== restoresWeighted);
      const wanted = new Set(state.records.map((r) => r.region));
      for (const raw of current.raw) {
        if (kindChanges || !wanted.has(raw.SetIdentifier ?? '')) changes.push({ Action: 'DELETE', ResourceRecordSet: raw });
      }
      for (const rec of state.records) {
        if (kindChanges) {
          changes.push({ Action: 'CREATE', ResourceRecordSet: toRecordSet(current, rec) });
        } else if (!sameRecord(rec, recordFor(current.state, rec.region))) {
          changes.push({ Action: 'UPSERT', ResourceRecordSet: toRecordSet(current, rec) });
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
  const traffic = svc.traffic;
  if (!svc.regions.includes(primaryRegion)) {
    throw ApplicationFailure.nonRetryable(
      `cannot seed traffic for service ${service}: primary region ${primaryRegion} is not one of its regions (${svc.regions.join(', ')})`,
      'UnknownRegion',
    );
  }
  const initial = initialRecords(svc, primaryRegion);
  const client = createRoute53Client(traffic, options.env ?? process.env);
  try {
    const t: Target = { service: svc, traffic, client };
    let zoneId = await findZoneId(t);
    let zoneCreated = false;
    if (zoneId === undefined) {
      if (looksLikeZoneId(traffic.hostedZone)) {
        throw ApplicationFailure.nonRetryable(`hosted zone ${traffic.hostedZone} of service ${service} does not exist; a zone given by id cannot be created`, 'NoSuchHostedZone');
      }
      const created = await aws(t, 'CreateHostedZone', () =>
        client.send(new CreateHostedZoneCommand({ Name: fqdn(traffic.hostedZone), CallerReference: `regionshift-${randomUUID()}` })),
      );
      zoneId = stripZonePrefix(created.HostedZone?.Id ?? '');
      zoneCreated = true;
    }
    const current = await readRecordSet(t, zoneId);
    if (current.state.records.length > 0) return { hostedZoneId: zoneId, zoneCreated, recordsCreated: false, state: current.state };
    // CREATE rather than UPSERT: if another seeder won the race the batch fails instead of
    // overwriting, and the records it wrote are what we report.
    const changes = initial.map((rec): Change => ({ Action: 'CREATE', ResourceRecordSet: toRecordSet(current, rec) }));
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

/** The region that receives writes: weighted, the highest weight above 0; failover, the PRIMARY. */
export function currentPrimaryRegion(state: TrafficState): string | undefined {
  let best: TrafficRecord | undefined;
  for (const rec of state.records) {
    if (rec.failover === 'PRIMARY') return rec.region;
    if (rec.weight !== undefined && rec.weight > 0 && (best?.weight === undefined || rec.weight > best.weight)) best = rec;
  }
  return best?.region;
}

// ---------------------------------------------------------------------------------------------

interface Target {
  service: Service;
  traffic: Route53Traffic;
  client: Route53Client;
}

/** The records as Route 53 holds them (DELETE must repeat them exactly) and as the contract names them. */
interface RecordSetView {
  /** The name as Route 53 spells it, reused on writes so a write never creates a look-alike. */
  name: string;
  raw: ResourceRecordSet[];
  state: TrafficState;
}

function findService(config: Config, service: string): Service {
  const svc = config.services.find((s) => s.name === service);
  if (!svc) {
    throw ApplicationFailure.nonRetryable(
      `unknown service ${service}: this worker's config has ${config.services.map((s) => s.name).join(', ')}`,
      'UnknownService',
    );
  }
  return svc;
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
      message: `Route 53 ${operation} for service ${t.service.name} (zone ${t.traffic.hostedZone}, record ${t.traffic.recordName}` +
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
    if (!page.IsTruncated || !sameName(page.NextDNSName, hostedZone) || (last && !sameName(last.Name, hostedZone))) break;
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
  const raw: ResourceRecordSet[] = [];
  const seen = new Set<string>();
  // Lowercase: Route 53 compares names case-insensitively, moto compares the raw strings.
  let start: Pick<ListResourceRecordSetsCommandInput, 'StartRecordName' | 'StartRecordType' | 'StartRecordIdentifier'> = {
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
    const next = { StartRecordName: page.NextRecordName, StartRecordType: page.NextRecordType, StartRecordIdentifier: page.NextRecordIdentifier };
    if (next.StartRecordType === start.StartRecordType && next.StartRecordIdentifier === start.StartRecordIdentifier && next.StartRecordName === start.StartRecordName) {
      // An endpoint that ignores StartRecordIdentifier (moto does) would hand back this page forever.
      throw ApplicationFailure.retryable(
        `Route 53 listing of ${recordName} for service ${t.service.name} did not advance past ${next.StartRecordName} ${next.StartRecordType ?? ''}`,
        'PaginationStuck',
      );
    }
    start = next;
  }
  const records = raw.map((rr) => toTrafficRecord(t, rr));
  const order = (region: string): number => {
    const i = t.service.regions.indexOf(region);
    return i === -1 ? Number.MAX_SAFE_INTEGER : i;
  };
  records.sort((a, b) => order(a.region) - order(b.region) || a.region.localeCompare(b.region));
  return { name: raw[0]?.Name ?? fqdn(recordName).toLowerCase(), raw, state: { recordName, records } };
}

function toTrafficRecord(t: Target, rr: ResourceRecordSet): TrafficRecord {
  const refuse = (why: string): never => {
    throw ApplicationFailure.nonRetryable(
      `Route 53 record ${rr.Name ?? '?'} ${rr.Type ?? '?'} (SetIdentifier ${rr.SetIdentifier ?? 'none'}) of service ${t.service.name} ` +
        `cannot be managed by regionshift: ${why}. Fix or remove that record in zone ${t.traffic.hostedZone}.`,
      'UnmappableRecord',
    );
  };
  if (rr.Type !== 'CNAME') return refuse(`it is a ${rr.Type ?? 'typeless'} record, regionshift manages CNAMEs to the regions' endpoints`);
  if (!rr.SetIdentifier) return refuse('it has no SetIdentifier, which names the region');
  if (rr.AliasTarget) return refuse('alias records are not supported');
  const values = rr.ResourceRecords ?? [];
  if (values.length !== 1 || !values[0]?.Value) return refuse(`a CNAME needs exactly one value, it has ${values.length}`);
  if (rr.TTL === undefined) return refuse('it has no TTL');
  if ((rr.Weight === undefined) === (rr.Failover === undefined)) {
    return refuse('it needs either a Weight or a Failover role (and not both)');
  }
  const rec: TrafficRecord = { region: rr.SetIdentifier, target: values[0].Value, ttl: rr.TTL };
  if (rr.Weight !== undefined) rec.weight = rr.Weight;
  if (rr.Failover !== undefined) {
    if (rr.Failover !== 'PRIMARY' && rr.Failover !== 'SECONDARY') return refuse(`unknown failover role ${String(rr.Failover)}`);
    rec.failover = rr.Failover;
  }
  return rec;
}

/** A record to write, keeping what the contract does not model (health checks) from the live record. */
function toRecordSet(view: RecordSetView, rec: TrafficRecord): ResourceRecordSet {
  const live = view.raw.find((rr) => rr.SetIdentifier === rec.region);
  const { Weight: _w, Failover: _f, TTL: _t, ResourceRecords: _r, ...kept } = live ?? {};
  return {
    ...kept,
    Name: view.name,
    Type: 'CNAME',
    SetIdentifier: rec.region,
    TTL: rec.ttl,
    ResourceRecords: [{ Value: rec.target }],
    ...(rec.weight !== undefined ? { Weight: rec.weight } : {}),
    ...(rec.failover !== undefined ? { Failover: rec.failover } : {}),
  };
}

function recordFor(state: TrafficState, region: string): TrafficRecord | undefined {
  return state.records.find((r) => r.region === region);
}

function sameRecord(a: TrafficRecord, b: TrafficRecord | undefined): boolean {
  return b !== undefined && a.region === b.region && a.target === b.target && a.ttl === b.ttl && a.weight === b.weight && a.failover === b.failover;
}

function sameState(a: TrafficState, b: TrafficState): boolean {
  return a.records.length === b.records.length && b.records.every((rec) => sameRecord(rec, recordFor(a, rec.region)));
}

function maxTtl(records: TrafficRecord[]): number {
  return records.reduce((max, r) => Math.max(max, r.ttl), 0);
}

function describeState(state: TrafficState): string {
  return state.records.map((r) => `${r.region}=${r.weight ?? r.failover}`).join(' ');
}

function requireKnownRegion(t: Target, state: TrafficState, region: string): void {
  const inConfig = t.service.regions.includes(region);
  const inRecords = recordFor(state, region) !== undefined;
  if (inConfig && inRecords) return;
  const where = !inConfig && !inRecords ? 'neither a region of the service nor in its records' : !inConfig ? 'not a region of the service in the config' : 'in the config but has no record';
  throw ApplicationFailure.nonRetryable(
    `cannot shift traffic of service ${t.service.name}: region ${region} is ${where} (record ${t.traffic.recordName} has ` +
      `${state.records.map((r) => r.region).join(', ') || 'no records'}; config regions ${t.service.regions.join(', ')})`,
    'UnknownRegion',
  );
}

function routingOf(t: Target, state: TrafficState): 'weighted' | 'failover' {
  const weighted = state.records.filter((r) => r.weight !== undefined).length;
  if (weighted === state.records.length) return 'weighted';
  if (weighted === 0) return 'failover';
  throw ApplicationFailure.nonRetryable(
    `record ${t.traffic.recordName} of service ${t.service.name} mixes weighted and failover records; Route 53 should not allow this, fix the zone by hand`,
    'UnmappableRecord',
  );
}

/** `to` takes over `from`'s share; every other region keeps its own. */
function shiftWeights(t: Target, state: TrafficState, from: string, to: string): TrafficRecord[] {
  // All-zero weights mean equal shares in Route 53, so read them as 1 each to keep the shares.
  const allZero = state.records.every((r) => r.weight === 0);
  const weights = new Map(state.records.map((r) => [r.region, allZero ? 1 : (r.weight ?? 0)]));
  const fromWeight = weights.get(from) ?? 0;
  const toWeight = weights.get(to) ?? 0;
  if (fromWeight === 0) {
    if (toWeight > 0) return state.records;
    throw ApplicationFailure.nonRetryable(
      `cannot shift traffic of service ${t.service.name} from ${from} to ${to}: neither receives traffic (record ${t.traffic.recordName}: ${describeState(state)}); ` +
        `shift from the region that does`,
      'NothingToShift',
    );
  }
  weights.set(to, toWeight + fromWeight);
  weights.set(from, 0);
  const top = toWeight + fromWeight;
  if (top > MAX_WEIGHT) {
    // Scale everyone so the ratios survive the 255 cap; a region with traffic keeps at least 1.
    for (const [region, w] of weights) weights.set(region, w === 0 ? 0 : Math.max(1, Math.round((w * MAX_WEIGHT) / top)));
  }
  return state.records.map((r) => ({ ...r, weight: weights.get(r.region) ?? 0 }));
}

function shiftFailover(state: TrafficState, from: string, to: string): TrafficRecord[] {
  return state.records.map((r) =>
    r.region === to ? { ...r, failover: 'PRIMARY' as const } : r.region === from ? { ...r, failover: 'SECONDARY' as const } : r,
  );
}

function initialRecords(svc: Service, primaryRegion: string): TrafficRecord[] {
  const { traffic } = svc;
  const record = (region: string): TrafficRecord => ({ region, target: traffic.endpoints[region] ?? '', ttl: traffic.ttl });
  if (traffic.routing === 'weighted') {
    return svc.regions.map((region) => ({ ...record(region), weight: region === primaryRegion ? 100 : 0 }));
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
  if (!sameName(state.recordName, t.traffic.recordName)) problems.push(`it is for record ${state.recordName}, the service's record is ${t.traffic.recordName}`);
  if (state.records.length === 0) problems.push('it has no records, and restoring it would take the service out of DNS');
  const regions = new Set<string>();
  for (const rec of state.records) {
    const at = `record ${rec.region || '(no region)'}`;
    if (!rec.region) problems.push(`${at}: no region`);
    if (regions.has(rec.region)) problems.push(`${at}: listed twice`);
    regions.add(rec.region);
    if (!rec.target) problems.push(`${at}: no target`);
    if (!Number.isInteger(rec.ttl) || rec.ttl < 0) problems.push(`${at}: TTL ${rec.ttl} is not a whole number of seconds`);
    if ((rec.weight === undefined) === (rec.failover === undefined)) problems.push(`${at}: needs either a weight or a failover role`);
    if (rec.weight !== undefined && (!Number.isInteger(rec.weight) || rec.weight < 0 || rec.weight > MAX_WEIGHT)) problems.push(`${at}: weight ${rec.weight} is not in 0..255`);
    if (rec.failover !== undefined && rec.failover !== 'PRIMARY' && rec.failover !== 'SECONDARY') problems.push(`${at}: failover ${String(rec.failover)} is not PRIMARY or SECONDARY`);
  }
  const weighted = state.records.filter((r) => r.weight !== undefined).length;
  if (weighted !== 0 && weighted !== state.records.length) problems.push('it mixes weighted and failover records');
  for (const role of ['PRIMARY', 'SECONDARY'] as const) {
    if (state.records.filter((r) => r.failover === role).length > 1) problems.push(`it has more than one ${role}`);
  }
  if (problems.length > 0) {
    throw ApplicationFailure.nonRetryable(`cannot restore traffic of service ${t.service.name}: ${problems.join('; ')}`, 'InvalidTrafficState');
  }
}

async function applyChanges(t: Target, zoneId: string, changes: Change[], comment: string): Promise<string> {
  const res = await aws(t, 'ChangeResourceRecordSets', () =>
    t.client.send(new ChangeResourceRecordSetsCommand({ HostedZoneId: zoneId, ChangeBatch: { Comment: comment, Changes: changes } })),
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
    heartbeatIfActivity({ changeId, status: res.ChangeInfo?.Status });
    await new Promise((resolve) => setTimeout(resolve, INSYNC_POLL_MS));
  }
}

/** The demo and tests call these functions outside an activity, where there is nobody to heartbeat to. */
function heartbeatIfActivity(details: unknown): void {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return;
  }
  ctx.heartbeat(details);
}
