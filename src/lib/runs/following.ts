// A Temporal client for long-lived processes (the intake, the Slack bot) that follows the namespace
// when the control plane is replicated. Resolving the active cluster once at start is not enough:
// after a control-plane failover every call would go to a dead cluster for ever.
//
// What a call sees, found against the local replicated stack (two full servers, all-apis-forwarding):
// - the cluster the client talks to is dead: ServiceError caused by gRPC UNAVAILABLE (14), "No
//   connection established … ECONNREFUSED", after the SDK's own retries (~18 s with its defaults);
// - the client talks to a passive cluster whose active one is dead: UNAVAILABLE too, from the
//   forwarding ("dial tcp …: connection refused");
// - the client talks to the old active cluster after a planned failover, both alive: the call is
//   forwarded and succeeds, so nothing needs following until that cluster goes.
// A cluster that hangs rather than refuses ends the call with DEADLINE_EXCEEDED (4).
// So both codes mean "ask the clusters where the namespace is now", and nothing else does.
import { Client, defaultGrpcRetryOptions, makeGrpcRetryInterceptor, type ConnectionOptions } from '@temporalio/client';
import { durationMs } from '../../contract/runbook/duration';
import type { Config } from '../config/schema';
import { clusterEndpoints, failoverControlPlane, namespaceView } from './control-plane';

export type GrpcInterceptors = NonNullable<ConnectionOptions['interceptors']>;

const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;

/** The call failed because the cluster (or the active one it forwards to) did not answer. */
export function isClusterSilence(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (e.code === UNAVAILABLE || e.code === DEADLINE_EXCEEDED) return true;
    e = e.cause as typeof e;
  }
  return false;
}

/** A control-plane failover this process made because the active cluster stayed silent. */
export interface ControlPlaneMove {
  from: string;
  to: string;
  failoverVersion: number;
  /** How long the old active cluster had been silent to this process. */
  silentMs: number;
  at: string;
}

export interface FollowingOptions {
  /**
   * Calls run with `{ failover: true }` may move the namespace once the active cluster has been
   * silent this long (temporal.controlPlaneFailoverAfter); undefined: never.
   */
  failoverAfterMs?: number;
  log?: (line: string) => void;
  /** How a cluster's connection and client are made (client.ts connect: codec, tracing). */
  connectTo: (address: string, interceptors: GrpcInterceptors | undefined) => Promise<Client>;
}

/**
 * The SDK retries UNAVAILABLE for ~18 s before a call fails; with other clusters to go to that is
 * 18 s lost per call, so a replicated control plane's clients retry briefly and follow instead.
 */
function briefRetries(): GrpcInterceptors {
  return [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: 3 }))];
}

export function failoverAfterMsOf(config: Config): number | undefined {
  const v = config.temporal.controlPlaneFailoverAfter;
  return v === 'off' ? undefined : durationMs(v);
}

export class FollowingClient {
  private current: { client: Client; address: string };
  /** Connections replaced by a move: other calls may still be in flight on them; closed at close(). */
  private readonly retired: Client[] = [];
  private following: Promise<Client | undefined> | undefined;
  /** When the active cluster was first seen silent, since it last answered. */
  private silentSince: number | undefined;
  private silenceLogged = false;
  /** Told of every namespace move this process makes, after it is made (the intake journals and logs it). */
  onMove: ((move: ControlPlaneMove) => void | Promise<void>) | undefined;
  /** Told when calls start going to another cluster (the intake moves its worker there too). */
  onAddress: ((address: string) => void) | undefined;

  private constructor(
    private readonly config: Config | undefined,
    client: Client,
    address: string,
    private readonly opts: Partial<FollowingOptions>,
  ) {
    this.current = { client, address };
  }

  /** A client that never follows: a single cluster, or a caller that pinned one (tests, TEMPORAL_ADDRESS). */
  static fixed(client: Client): FollowingClient {
    return new FollowingClient(undefined, client, '', {});
  }

  /**
   * Connected to the cluster the namespace is active in. With a single cluster (no
   * temporal.clusters, not replicated) or TEMPORAL_ADDRESS set, exactly the one client connect() makes.
   */
  static async connect(config: Config, address: string, opts: FollowingOptions): Promise<FollowingClient> {
    if (!clusterEndpoints(config) || process.env.TEMPORAL_ADDRESS)
      return FollowingClient.fixed(await opts.connectTo(address, undefined));
    return new FollowingClient(config, await opts.connectTo(address, briefRetries()), address, opts);
  }

  get client(): Client {
    return this.current.client;
  }

  /** The cluster the calls go to now ('' when the client does not follow). */
  get address(): string {
    return this.current.address;
  }

  /**
   * Runs `fn` with the current client; when it fails because the cluster did not answer, asks
   * every cluster where the namespace is, moves to the active one and runs `fn` once more there.
   * `failover`: this call may move the namespace itself (the intake delivering an alarm).
   */
  async run<T>(fn: (client: Client) => Promise<T>, opts: { failover?: boolean } = {}): Promise<T> {
    const used = this.current.client;
    const startedAt = Date.now();
    try {
      return await fn(used);
    } catch (err) {
      if (!this.config || !isClusterSilence(err)) throw err;
      const next = await this.follow(used, startedAt, opts.failover === true);
      if (!next) throw err;
      return fn(next);
    }
  }

  /** One re-resolution at a time: calls failing together wait for the same answer. */
  private follow(used: Client, startedAt: number, failover: boolean): Promise<Client | undefined> {
    // Another call already moved on from the client this one used.
    if (this.current.client !== used) return Promise.resolve(this.current.client);
    this.following ??= this.resolve(startedAt, failover).finally(() => (this.following = undefined));
    return this.following;
  }

  private async resolve(startedAt: number, failover: boolean): Promise<Client | undefined> {
    const config = this.config!;
    const log = this.opts.log ?? ((line: string) => console.log(line));
    let view;
    try {
      view = await namespaceView(config);
    } catch {
      return undefined; // no cluster answers: nothing to follow to
    }
    const clusters = clusterEndpoints(config)!;
    const addressOf = (region: string): string => clusters.find((c) => c.region === region)!.address;
    if (view.answered.includes(view.active)) {
      this.silentSince = undefined;
      this.silenceLogged = false;
      return this.moveTo(addressOf(view.active));
    }
    // The active cluster is silent to this process. Survivors in config order: every intake that
    // sees the same clusters picks the same one.
    const survivors = clusters.filter((c) => view.answered.includes(c.region));
    this.silentSince ??= startedAt;
    const silentMs = Date.now() - this.silentSince;
    const after = this.opts.failoverAfterMs;
    if (failover && after !== undefined && silentMs >= after) {
      const target = survivors[0]!;
      const moved = await failoverControlPlane(config, target.region);
      this.silentSince = undefined;
      this.silenceLogged = false;
      if (moved.changed) {
        const move: ControlPlaneMove = {
          from: moved.from,
          to: moved.to,
          failoverVersion: moved.failoverVersion,
          silentMs,
          at: new Date().toISOString(),
        };
        await this.onMove?.(move);
      }
      return this.moveTo(target.address);
    }
    if (failover && after !== undefined && !this.silenceLogged) {
      this.silenceLogged = true;
      log(
        `control plane: cluster ${view.active} (namespace ${config.temporal.namespace} active there) does not answer; failing over to ${survivors[0]!.region} if it stays silent ${Math.ceil((after - silentMs) / 1000)} s more`,
      );
    }
    // A survivor forwards to the active cluster: calls fail there too until someone fails the
    // namespace over, and then they are already in the right place. Already there: nothing to retry.
    if (survivors.some((c) => c.address === this.current.address)) return undefined;
    return this.moveTo(survivors[0]!.address);
  }

  private async moveTo(address: string): Promise<Client> {
    if (address === this.current.address) return this.current.client;
    const client = await this.opts.connectTo!(address, briefRetries());
    this.retired.push(this.current.client);
    this.current = { client, address };
    this.onAddress?.(address);
    return client;
  }

  async close(): Promise<void> {
    await Promise.all(
      [this.current.client, ...this.retired.splice(0)].map((c) => c.connection.close().catch(() => undefined)),
    );
  }
}
