// The alarm senders of bench/intake.ts, on a thread of their own: real senders are other
// machines, and sharing the intake's event loop with them would measure the senders' queueing as
// the intake's latency. Two shapes, over keep-alive connections:
// - burst (closed loop): `concurrency` senders, each posting its next delivery as soon as the
//   last is answered: the most the intake accepts per second. Its latencies are mostly queueing
//   (latency = concurrency / throughput at saturation), so they are not the latency figure.
// - paced (open loop): deliveries sent at `rate` per second whatever the answers, each timed from
//   when it was due, not when it went out, so a stall is not hidden by sending less during it.
import { Agent, request } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';

export interface LoadInput {
  url: string;
  token: string;
  alarm: string;
  region: string;
  deliveries: number;
  concurrency: number;
  /** Paced at this many deliveries per second; absent: a burst. */
  rate?: number;
}

export interface LoadResult {
  latencies: number[];
  wallMs: number;
  statuses: Record<number, number>;
}

function post(agent: Agent, url: URL, token: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** An Alertmanager webhook with one firing alert, as Alertmanager sends it. */
export function alertmanagerBody(alarm: string, region: string): string {
  const now = new Date().toISOString();
  return JSON.stringify({
    version: '4',
    status: 'firing',
    receiver: 'regionshift',
    groupLabels: {},
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://bench',
    alerts: [
      {
        status: 'firing',
        labels: { alertname: alarm, region },
        annotations: { summary: 'bench' },
        startsAt: now,
        endsAt: '0001-01-01T00:00:00Z',
        fingerprint: 'bench',
      },
    ],
  });
}

export async function load(input: LoadInput): Promise<LoadResult> {
  const url = new URL(input.url);
  // Paced: enough connections that a slow answer never holds back the next delivery.
  const agent = new Agent({ keepAlive: true, maxSockets: input.rate ? 256 : input.concurrency });
  const body = (): string => alertmanagerBody(input.alarm, input.region);
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  // Warm the connections first, so the figures are not about TCP handshakes.
  await Promise.all(Array.from({ length: input.concurrency }, () => post(agent, url, input.token, body())));
  const started = performance.now();
  if (input.rate) {
    const rate = input.rate;
    await Promise.all(
      Array.from({ length: input.deliveries }, async (_, i) => {
        const due = started + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const status = await post(agent, url, input.token, body());
        latencies.push(performance.now() - due);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }),
    );
    const wallMs = performance.now() - started;
    agent.destroy();
    return { latencies, wallMs, statuses };
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: input.concurrency }, async () => {
      while (next < input.deliveries) {
        next++;
        const b = body();
        const t = performance.now();
        const status = await post(agent, url, input.token, b);
        latencies.push(performance.now() - t);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  const wallMs = performance.now() - started;
  agent.destroy();
  return { latencies, wallMs, statuses };
}

if (parentPort && workerData) {
  load(workerData as LoadInput).then(
    (r) => parentPort!.postMessage(r),
    (err: Error) => parentPort!.postMessage({ error: err.message }),
  );
}
