// Which Temporal cluster to talk to when the control plane is replicated (one cluster per region,
// the namespace global): the namespace's own record says which cluster is active, and any cluster
// that answers can say it. Clients use the active one; a region's worker uses its own region's
// (all-apis-forwarding sends its polls on to the active one while its cluster is passive; once
// the namespace fails over to it, only its pollers are renewed: workers/region.ts). Moving the
// namespace is an UpdateNamespace on a cluster that answers: after losing the active cluster, the
// survivor's own view is the only one left, which is how an unplanned control-plane failover goes.
import { Connection } from '@temporalio/client';
import { CONTROL_TASK_QUEUE } from '../../contract/runbook/ids';
import type { Config } from '../config/schema';
import { temporalCredentials } from '../config/temporal-credentials';

export interface ClusterEndpoint {
  /** The region, which is also the cluster's name. */
  region: string;
  address: string;
}

export interface NamespaceView {
  /** The cluster the namespace is active in. */
  active: string;
  failoverVersion: number;
  /** The cluster that gave this view. */
  from: string;
}

/** Regions in the order services first name them: the writer region of the first service leads. */
function regionsOf(config: Config): string[] {
  return [...new Set(config.services.flatMap((s) => s.regions))];
}

/**
 * The control plane's clusters, one per region; undefined for a single cluster. The local
 * stack's clusters sit at stack.temporalPort + 10 × the region's index unless listed.
 */
export function clusterEndpoints(config: Config): ClusterEndpoint[] | undefined {
  const listed = config.temporal.clusters;
  if (listed) return regionsOf(config).map((region) => ({ region, address: listed[region]! }));
  if (config.stack.controlPlane !== 'replicated') return undefined;
  return regionsOf(config).map((region, i) => ({ region, address: `127.0.0.1:${config.stack.temporalPort + 10 * i}` }));
}

export function endpointOf(config: Config, region: string): ClusterEndpoint {
  const all = clusterEndpoints(config);
  const found = all?.find((c) => c.region === region);
  if (!found)
    throw new Error(
      `no Temporal cluster for region ${region}${all ? ` (clusters: ${all.map((c) => c.region).join(', ')})` : ': the control plane is a single cluster (temporal.clusters or stack.controlPlane: replicated)'}`,
    );
  return found;
}

async function withConnection<T>(
  config: Config,
  address: string,
  fn: (c: Connection) => Promise<T>,
  timeoutMs = 2_000,
): Promise<T> {
  const c = await Connection.connect({ address, connectTimeout: timeoutMs, ...temporalCredentials(config) });
  try {
    return await fn(c);
  } finally {
    await c.close().catch(() => undefined);
  }
}

/** What one cluster says of the namespace. */
export async function namespaceViewAt(
  config: Config,
  address: string,
  timeoutMs = 2_000,
): Promise<Omit<NamespaceView, 'from'>> {
  return withConnection(
    config,
    address,
    async (c) => {
      const d = await c.workflowService.describeNamespace({ namespace: config.temporal.namespace });
      return { active: d.replicationConfig?.activeClusterName ?? '', failoverVersion: Number(d.failoverVersion ?? 0) };
    },
    timeoutMs,
  );
}

/**
 * Every cluster asked at once; the newest view wins (the highest failover version: a cluster
 * that missed a failover still names the old active one). Throws when none answers.
 */
export async function namespaceView(
  config: Config,
  timeoutMs = 2_000,
): Promise<NamespaceView & { answered: string[]; silent: string[] }> {
  const clusters = clusterEndpoints(config) ?? [];
  const views = await Promise.all(
    clusters.map(async (c) => {
      try {
        return { ...(await namespaceViewAt(config, c.address, timeoutMs)), from: c.region };
      } catch {
        return undefined;
      }
    }),
  );
  const answered = views.filter((v): v is NamespaceView => v !== undefined);
  if (!answered.length)
    throw new Error(
      `no Temporal cluster answered for namespace ${config.temporal.namespace} (${clusters.map((c) => `${c.region} ${c.address}`).join(', ')})`,
    );
  const best = answered.reduce((a, b) => (b.failoverVersion > a.failoverVersion ? b : a));
  return {
    ...best,
    answered: answered.map((v) => v.from),
    silent: clusters.filter((c) => !answered.some((v) => v.from === c.region)).map((c) => c.region),
  };
}

/**
 * The address a client should use: the active cluster's when it answers, else one that answers
 * (a passive cluster forwards; calls fail there until the namespace fails over, saying so).
 */
export async function activeAddress(config: Config): Promise<string> {
  const view = await namespaceView(config);
  const active = clusterEndpoints(config)!.find((c) => c.region === view.active);
  if (active && view.answered.includes(active.region)) return active.address;
  return endpointOf(config, view.from).address;
}

/**
 * Makes `target`'s cluster the namespace's active one, through that cluster, and waits until it
 * says so itself. Idempotent: a namespace already active there is left alone.
 */
export async function failoverControlPlane(
  config: Config,
  target: string,
  timeoutMs = 30_000,
): Promise<{ from: string; to: string; failoverVersion: number; changed: boolean }> {
  const { address } = endpointOf(config, target);
  const namespace = config.temporal.namespace;
  const before = await namespaceViewAt(config, address).catch((err: Error) => {
    throw new Error(
      `the Temporal cluster of ${target} (${address}) does not answer (${err.message}); pick a cluster that is up`,
    );
  });
  if (before.active === target)
    return { from: target, to: target, failoverVersion: before.failoverVersion, changed: false };
  await withConnection(
    config,
    address,
    (c) => c.workflowService.updateNamespace({ namespace, replicationConfig: { activeClusterName: target } }),
    10_000,
  );
  const until = Date.now() + timeoutMs;
  for (;;) {
    const now = await namespaceViewAt(config, address).catch(() => undefined);
    if (now?.active === target) {
      await reassertCurrentVersion(config, address, until);
      return { from: before.active, to: target, failoverVersion: now.failoverVersion, changed: true };
    }
    if (Date.now() > until)
      throw new Error(`namespace ${namespace} is not active in ${target} ${timeoutMs} ms after the failover request`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * The control deployment's current version, set again on the new active cluster. The deployment's
 * record replicates, but the task queue's routing (its user data) may not have when the old active
 * cluster died soon after a worker version became current: the survivor then queues new runs as
 * unversioned, and the versioned control workers never take them (seen: the server logs "timed out
 * waiting for worker deployment version to appear in user data"). Setting the version on the
 * survivor writes that routing there.
 *
 * Only when the routing is missing: the deployment's record is read with a query to its workflow,
 * which right after the failover the survivor may not answer for a while (seen: DescribeWorkerDeployment
 * hanging 30 s, the server's deadline, with the alarm held back all that time), whereas the task
 * queue's own routing comes from matching, no workflow involved (DescribeTaskQueue: 0.2–1.0 s in
 * ten bench failovers, the routing there in eight).
 */
async function reassertCurrentVersion(config: Config, address: string, until: number): Promise<void> {
  const namespace = config.temporal.namespace;
  // Loaded here only: the versioning module brings the worker SDK, which no other client call needs.
  const { CONTROL_DEPLOYMENT, routedBuildId } = await import('../../../workers/versioning');
  // One question may take 2 s (never past the caller's deadline): one that hangs must not use up
  // all the time there is.
  const questionDeadline = (): number => Math.min(until, Date.now() + 2_000);
  await withConnection(
    config,
    address,
    async (c) => {
      // Bounded too: an answer that does not come means the routing is repaired the slow way.
      const routed = await c
        .withDeadline(questionDeadline(), () => routedBuildId(c.workflowService, namespace, CONTROL_TASK_QUEUE))
        .catch(() => undefined);
      if (routed) return;
      // Asked again until the caller's deadline.
      let buildId: string | undefined;
      for (;;) {
        try {
          const d = await c.withDeadline(questionDeadline(), () =>
            c.workflowService.describeWorkerDeployment({ namespace, deploymentName: CONTROL_DEPLOYMENT }),
          );
          buildId = d.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId ?? undefined;
          break;
        } catch (err) {
          // No such deployment: no versioned control worker has run here.
          if ((err as { code?: number }).code === 5) return;
          if (Date.now() > until)
            throw new Error(
              `namespace ${namespace} failed over, but the control task queue there has no current version and ${CONTROL_DEPLOYMENT}'s record did not answer: ${(err as Error).message}`,
            );
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      if (!buildId) return; // no version made current yet
      for (;;) {
        try {
          await c.workflowService.setWorkerDeploymentCurrentVersion({
            namespace,
            deploymentName: CONTROL_DEPLOYMENT,
            buildId,
            identity: 'regionshift control-plane failover',
            ignoreMissingTaskQueues: true,
          });
          return;
        } catch (err) {
          // Right after the failover the cluster may still refuse writes it is about to accept.
          if (Date.now() > until)
            throw new Error(
              `namespace ${namespace} failed over, but setting ${CONTROL_DEPLOYMENT} version ${buildId} current there failed: ${(err as Error).message}`,
            );
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    10_000,
  );
}
