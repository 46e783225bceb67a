// `npm run prove-replication`: two Temporal clusters on this machine (src/stack/control-plane.ts),
// a global namespace active in the first, a workflow started there and seen on the second; a
// planned namespace failover to the second, a signal taken there and replicated back; then the
// run started on the second, the namespace failed back over mid-run, the run finished on the
// first with each step once; then the first killed outright and the namespace failed over through
// the survivor, timed.
// Exits non-zero, saying which step failed, when replication does not do what the stack relies on.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Client, type Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import {
  activeCluster,
  connectCluster,
  ensureTemporalServer,
  failoverNamespace,
  linkClusters,
  registerGlobalNamespace,
  startCluster,
  type ClusterSpec,
} from '../stack/control-plane';
import { freePorts, isPortFree } from '../lib/net';

const NAMESPACE = 'regionshift';

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A port with the eight after it free too (a cluster's services). */
async function freeRange(taken: number[]): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const [p] = (await freePorts(1)) as [number];
    if (p + 8 > 65535 || taken.some((t) => Math.abs(t - p) < 9)) continue;
    const free = await Promise.all(Array.from({ length: 9 }, (_, k) => isPortFree('127.0.0.1', p + k)));
    if (free.every(Boolean)) return p;
  }
  throw new Error('found no nine consecutive free ports');
}

async function eventTypes(conn: Connection, workflowId: string): Promise<string[]> {
  const h = await conn.workflowService.getWorkflowExecutionHistory({ namespace: NAMESPACE, execution: { workflowId } });
  return (h.history?.events ?? []).map((e) => String(e.eventType));
}

/**
 * A run on a worker of `from`; mid-run the namespace fails over to `to`, the worker moves there
 * (as a region's worker follows the active cluster), and the run finishes on `to`, every step once.
 */
async function runAcrossFailover(
  from: { spec: ClusterSpec; conn: Connection },
  to: { spec: ClusterSpec; conn: Connection },
  say: (line: string) => void,
): Promise<void> {
  const calls = new Map<string, number>();
  const activities = {
    step: async (name: string) => {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      return `${name}@${process.pid}`;
    },
  };
  const { code } = await bundleWorkflowCode({
    workflowsPath: join(__dirname, 'xdc-workflow.js'),
    logger: new DefaultLogger('WARN'),
  });
  const worker = async (c: ClusterSpec) =>
    Worker.create({
      connection: await NativeConnection.connect({ address: `127.0.0.1:${c.port}` }),
      namespace: NAMESPACE,
      taskQueue: 'xdc',
      workflowBundle: { code },
      activities,
    });
  const first = await worker(from.spec);
  const running = first.run();
  const client = (conn: Connection) => new Client({ connection: conn, namespace: NAMESPACE });
  if ((await activeCluster(from.conn, NAMESPACE)).active !== from.spec.name)
    throw new Error(`the run must start where the namespace is active (${from.spec.name})`);
  const handle = await client(from.conn).workflow.start('acrossFailover', { taskQueue: 'xdc', workflowId: 'xdc-run' });
  await until('the first step', async () => (calls.get('before') === 1 ? true : undefined));
  await failoverNamespace(from.conn, NAMESPACE, to.spec.name);
  await until(`${to.spec.name} active`, async () =>
    (await activeCluster(to.conn, NAMESPACE)).active === to.spec.name ? true : undefined,
  );
  first.shutdown();
  await running;
  const second = await worker(to.spec);
  const running2 = second.run();
  const onTo = client(to.conn).workflow.getHandle(handle.workflowId);
  await until(`${to.spec.name} to take the signal`, () => onTo.signal('go').then(() => true));
  const result = await onTo.result();
  second.shutdown();
  await running2;
  const twice = [...calls].filter(([, n]) => n !== 1);
  if (result.length !== 2 || twice.length)
    throw new Error(
      `the run across the failover: result ${JSON.stringify(result)}, steps not run exactly once: ${JSON.stringify(twice)}`,
    );
  say(
    `a run started on ${from.spec.name}, namespace failed over mid-run, finished on ${to.spec.name}: steps ${[...calls.keys()].join(', ')} each once`,
  );
}

async function main(): Promise<void> {
  const say = (line: string): void => console.log(line);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const bin = await ensureTemporalServer({ onProgress: say });
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-xdc-'));
  const pa = await freeRange([]);
  const pb = await freeRange([pa]);
  const specs: ClusterSpec[] = [
    { name: 'us-west-2', initialFailoverVersion: 1, port: pa, dir: join(dir, 'us-west-2') },
    { name: 'us-east-1', initialFailoverVersion: 2, port: pb, dir: join(dir, 'us-east-1') },
  ];
  const procs: ChildProcess[] = specs.map((s) => startCluster(bin, s));
  try {
    const [west, east] = await Promise.all(specs.map((s) => connectCluster(s)));
    const clusters = [
      { spec: specs[0]!, conn: west! },
      { spec: specs[1]!, conn: east! },
    ];
    await linkClusters(clusters);
    await registerGlobalNamespace(
      west!,
      NAMESPACE,
      specs.map((s) => s.name),
      'us-west-2',
    );
    await until('the namespace on us-east-1', async () =>
      (await activeCluster(east!, NAMESPACE)).active === 'us-west-2' ? true : undefined,
    );
    say(`global namespace ${NAMESPACE}: active in us-west-2, replicated to us-east-1`);

    await west!.workflowService.startWorkflowExecution({
      namespace: NAMESPACE,
      workflowId: 'xdc-1',
      workflowType: { name: 'Nothing' },
      taskQueue: { name: 'nobody' },
      requestId: 'xdc-1',
    });
    await until('the run replicated to us-east-1', async () =>
      (await eventTypes(east!, 'xdc-1')).length >= 2 ? true : undefined,
    );
    say("a run started on us-west-2 is in us-east-1's history");

    await failoverNamespace(west!, NAMESPACE, 'us-east-1');
    const planned = await until('us-east-1 active', async () => {
      const a = await activeCluster(east!, NAMESPACE);
      return a.active === 'us-east-1' ? a : undefined;
    });
    const before = (await eventTypes(west!, 'xdc-1')).length;
    // Right after a failover the new active cluster may still be applying what it was sent: retried.
    await until('us-east-1 to take a signal', () =>
      east!.workflowService.signalWorkflowExecution({
        namespace: NAMESPACE,
        workflowExecution: { workflowId: 'xdc-1' },
        signalName: 'after-failover',
        requestId: 'sig-1',
      }),
    );
    await until('the signal replicated back to us-west-2', async () =>
      (await eventTypes(west!, 'xdc-1')).length > before ? true : undefined,
    );
    say(
      `planned failover: us-east-1 active (failover version ${planned.failoverVersion}); a signal it took is in us-west-2's history`,
    );

    // us-east-1 is active: a run starts there and the namespace goes back to us-west-2 under it.
    await runAcrossFailover(clusters[1]!, clusters[0]!, say);

    procs[0]!.kill('SIGKILL');
    const killedAt = Date.now();
    await failoverNamespace(east!, NAMESPACE, 'us-east-1');
    const back = await until('us-east-1 active again', async () => {
      const a = await activeCluster(east!, NAMESPACE);
      return a.active === 'us-east-1' ? a : undefined;
    });
    await until('us-east-1 to take a signal', () =>
      east!.workflowService.signalWorkflowExecution({
        namespace: NAMESPACE,
        workflowExecution: { workflowId: 'xdc-1' },
        signalName: 'after-loss',
        requestId: 'sig-2',
      }),
    );
    say(
      `unplanned: us-west-2 killed; the namespace failed over through us-east-1 (failover version ${back.failoverVersion}), taking signals ${Date.now() - killedAt} ms after the kill`,
    );
    await Promise.allSettled([west!.close(), east!.close()]);
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`replication proof failed: ${(err as Error).message}`);
  process.exit(1);
});
