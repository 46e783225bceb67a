// One timed run of a peer, measured exactly as regionshift's runs are (same probes, same
// one-client write load, same process accounting), so the two can be set side by side.
import { acceptsWrite, firstTime, isStreamingStandby, presentWrites } from './pg';
import type { PeerPair } from './peer';
import { sampleUsage } from './procs';
import { startPeerWriter, type PeerAck } from './writer';
import { sleep } from '../../src/stack/wait';

export interface Sample {
  /** Planned: command issued → the new primary accepted a write. Unplanned: kill → that. Undefined: not within the deadline. */
  ms: number | undefined;
  /** Planned only: command issued → the old primary is a streaming standby again. */
  standbyMs?: number | undefined;
  /** Planned only: acknowledged writes missing on the new primary afterwards. */
  lostWrites?: number;
  ackedWrites?: number;
  /** When writes were lost: by which node and when (ms after the command) they were acknowledged. */
  lostDetail?: string;
  cpuMs: number;
  peakRssMb: number;
  detail: string;
  /** Unplanned: the node killed, which the caller brings back before the next run. */
  killed?: number;
}

const DEADLINE_MS = 180_000;

export async function peerPlanned(pair: PeerPair): Promise<Sample> {
  await pair.ready();
  const source = await pair.primary();
  const target = 1 - source;
  if (!(await firstTime(() => isStreamingStandby(pair.nodes[target]!), Date.now() + 60_000, 100)))
    throw new Error(`node${target} is not a streaming standby before the switchover`);
  const writer = startPeerWriter(pair.nodes);
  const acked = await firstTime(async () => writer.acks.length > 0, Date.now() + 15_000);
  if (!acked) throw new Error('the write load could not commit before the switchover');
  const usage = sampleUsage(() => pair.toolRoots());
  const t0 = Date.now();
  const deadline = t0 + DEADLINE_MS;
  const wrote = firstTime(() => acceptsWrite(pair.nodes[target]!), deadline);
  const standby = firstTime(() => isStreamingStandby(pair.nodes[source]!), deadline);
  let failed: Error | undefined;
  await pair.switchover(target).catch((err: Error) => (failed = err));
  const [w, s] = await Promise.all([wrote, standby]);
  const used = usage.stop();
  const since = Date.now();
  await firstTime(async () => writer.acks.some((a) => a.node === target && a.at >= since), Date.now() + 10_000);
  await sleep(100);
  await writer.stop();
  if (failed) throw failed;
  const ids = writer.acks.map((a) => a.id);
  const present = await presentWrites(pair.nodes[target]!, ids);
  const lost = writer.acks.filter((a) => !present.has(a.id));
  return {
    ms: w === undefined ? undefined : w - t0,
    standbyMs: s === undefined ? undefined : s - t0,
    lostWrites: lost.length,
    ackedWrites: ids.length,
    ...used,
    ...(lost.length ? { lostDetail: lostWindow(lost, t0) } : {}),
    detail: `node${source} → node${target}`,
  };
}

export async function peerUnplanned(pair: PeerPair): Promise<Sample> {
  await pair.ready();
  const source = await pair.primary();
  const target = 1 - source;
  if (!(await firstTime(() => isStreamingStandby(pair.nodes[target]!), Date.now() + 60_000, 100)))
    throw new Error(`node${target} is not a streaming standby before the kill`);
  const usage = sampleUsage(() => pair.toolRoots());
  const t0 = Date.now();
  await pair.kill(source);
  const w = await firstTime(() => acceptsWrite(pair.nodes[target]!), t0 + DEADLINE_MS);
  const used = usage.stop();
  return {
    ms: w === undefined ? undefined : w - t0,
    ...used,
    detail: `node${source} killed → node${target}`,
    killed: source,
  };
}

function lostWindow(lost: PeerAck[], t0: number): string {
  const byNode = new Map<number, PeerAck[]>();
  for (const a of lost) byNode.set(a.node, [...(byNode.get(a.node) ?? []), a]);
  return [...byNode]
    .map(
      ([node, acks]) =>
        `${acks.length} acknowledged by node${node} between ${acks[0]!.at - t0} and ${acks[acks.length - 1]!.at - t0} ms after the command`,
    )
    .join('; ');
}
