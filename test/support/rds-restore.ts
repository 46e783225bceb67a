// A small RDS front for the Aurora reconciliation tests: requests go to moto, which keeps the
// clusters, snapshots and instances (DescribeDBClusters, DescribeDBClusterSnapshots,
// CopyDBClusterSnapshot, RestoreDBClusterFromSnapshot, CreateDBInstance, DescribeDBInstances);
// the global-database operations moto lacks (DescribeGlobalClusters with a failed-over writer,
// Switchover/FailoverGlobalCluster, RemoveFromGlobalCluster) and the CloudWatch lag metric go to
// test/support/rds-sim.ts when one is given. The real @aws-sdk/client-rds talks to it over HTTP.
//
// On top of moto's answers it adds what a restored cluster is in AWS, which moto does not model
// (from the RDS API reference: RestoreDBClusterFromSnapshot, CreateDBInstance, DBCluster,
// DBInstance, and the Aurora user guide's "Restoring from a DB cluster snapshot"):
// - the restored cluster's storage is the snapshot's: here a copy of the data directory of the
//   PostgreSQL standing in for the old primary's writer, taken when Aurora took its snapshot
//   (snapshotOldPrimary), and a snapshot copy shares its source's storage;
// - RestoreDBClusterFromSnapshot creates the cluster only, with no instances, Status creating
//   (restoreMs), then available; CreateDBInstance before it is available is refused with
//   InvalidDBClusterStateFault ("You can create DB instances only after the
//   RestoreDBClusterFromSnapshot operation has completed and the DB cluster is available");
//   restoring a snapshot that is not available is refused with InvalidDBClusterSnapshotStateFault;
// - a snapshot copy is creating for copyMs, then available;
// - CreateDBInstance in the restored cluster starts a real PostgreSQL on that storage; the instance
//   is creating until it accepts connections (and at least instanceMs), then available, and only
//   then do the instance's Endpoint and the cluster's writer Endpoint/Port lead to it (before, the
//   instance has no Endpoint and the cluster's DNS name is moto's, which resolves nowhere);
// - DeleteDBInstance stops that PostgreSQL.
// Timings are shortened; the order of states is the documented one.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { start, stop, type PgNode } from '../../src/lib/postgres/node';
import { createUnplannedFailoverSnapshot } from './aurora-moto';
import { freePort } from './ports';
import type { RdsSim } from './rds-sim';

const execFileAsync = promisify(execFile);

/** Served by rds-sim when the front has one: what moto lacks for Aurora global databases. */
const SIM_ACTIONS = new Set([
  'DescribeGlobalClusters',
  'SwitchoverGlobalCluster',
  'FailoverGlobalCluster',
  'RemoveFromGlobalCluster',
]);

export interface RestoreFrontOptions {
  motoUrl: string;
  sim?: RdsSim;
  pgBin: string;
  /** Where snapshot storage and the restored clusters' data directories go. */
  dir: string;
  restoreMs?: number;
  instanceMs?: number;
  copyMs?: number;
}

interface Restored {
  region: string;
  snapshot: string;
  at: number;
  storage: string;
  /** The copy of the snapshot's storage this cluster runs on, once made. */
  ready: Promise<void>;
  copied: boolean;
}

interface Instance {
  cluster: string;
  at: number;
  node?: PgNode;
  failed?: string;
}

export interface RestoreFront {
  url: string;
  /** Every RDS request: action, the region it was signed for, and the status answered. */
  log: { action: string; region: string; status: number; params: Record<string, string> }[];
  accepted(action: string): number;
  /**
   * What Aurora does when the old primary's region is back after an unplanned failover: it
   * snapshots the old primary (rds:unplanned-global-failover-<cluster>-<time>, in moto), whose
   * storage is the stand-in's data directory as it is now (the server must be stopped).
   */
  snapshotOldPrimary(region: string, cluster: string, dataDir: string): Promise<string>;
  /** The PostgreSQL serving a restored cluster's instance, once it runs. */
  restoredNode(cluster: string): PgNode | undefined;
  close(): Promise<void>;
}

// --- XML: moto's answers are edited in place, element by element ---------------------------

const TAG = /<(\/?)([A-Za-z0-9_]+)[^>]*?(\/?)>/g;

/** Sets (or removes, with undefined) a direct child element of an element's inner XML. */
function setChild(inner: string, tag: string, value: string | undefined): string {
  let depth = 0;
  let startAt = -1;
  for (const m of inner.matchAll(TAG)) {
    const [whole, closing, name, selfClosing] = m;
    if (closing) {
      depth--;
      if (depth === 0 && startAt >= 0 && name === tag) {
        const end = m.index + whole.length;
        return inner.slice(0, startAt) + (value === undefined ? '' : `<${tag}>${value}</${tag}>`) + inner.slice(end);
      }
    } else if (!selfClosing) {
      if (depth === 0 && name === tag) startAt = m.index;
      depth++;
    } else if (depth === 0 && name === tag) {
      const end = m.index + whole.length;
      return inner.slice(0, m.index) + (value === undefined ? '' : `<${tag}>${value}</${tag}>`) + inner.slice(end);
    }
  }
  return value === undefined ? inner : `${inner}<${tag}>${value}</${tag}>`;
}

function child(inner: string, tag: string): string | undefined {
  return new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(inner)?.[1];
}

function mapBlocks(xml: string, tag: string, fn: (inner: string) => string): string {
  return xml.replace(
    new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'),
    (_, inner: string) => `<${tag}>${fn(inner)}</${tag}>`,
  );
}

function errorXml(code: string, message: string): string {
  return `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>front</RequestId></ErrorResponse>`;
}

// ---------------------------------------------------------------------------------------------

async function copyDir(from: string, to: string): Promise<void> {
  rmSync(to, { recursive: true, force: true });
  mkdirSync(join(to, '..'), { recursive: true, mode: 0o755 });
  // -a keeps the owner (the postgres user when the tests run as root) and the 0700 mode.
  await execFileAsync('cp', ['-a', from, to]);
}

/** Starts PostgreSQL on a restored cluster's storage: the same server, on a port of its own. */
async function startOnStorage(bin: string, storage: string, node: PgNode): Promise<void> {
  for (const f of ['postmaster.pid', 'standby.signal', 'recovery.signal']) rmSync(join(storage, f), { force: true });
  const conf = join(storage, 'regionshift.node.conf');
  writeFileSync(
    conf,
    [
      `port = ${node.port}`,
      `listen_addresses = '${node.host}'`,
      "unix_socket_directories = ''",
      `cluster_name = '${node.region}'`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const owner = statSync(storage);
  chownSync(conf, owner.uid, owner.gid);
  await start(bin, node);
}

export async function startRestoreFront(opts: RestoreFrontOptions): Promise<RestoreFront> {
  const restoreMs = opts.restoreMs ?? 1_500;
  const instanceMs = opts.instanceMs ?? 1_000;
  const copyMs = opts.copyMs ?? 500;
  const storage = new Map<string, string>();
  const copies = new Map<string, number>();
  const clusters = new Map<string, Restored>();
  const instances = new Map<string, Instance>();
  const log: RestoreFront['log'] = [];
  const accepted: Record<string, number> = {};
  mkdirSync(opts.dir, { recursive: true });
  // The servers run as the postgres user when the tests run as root: it must reach the data directories.
  chmodSync(opts.dir, 0o755);

  const clusterStatus = (c: Restored): string =>
    Date.now() - c.at >= restoreMs && c.copied ? 'available' : 'creating';
  const instanceStatus = (i: Instance): string =>
    i.failed ? 'failed' : i.node && Date.now() - i.at >= instanceMs ? 'available' : 'creating';
  const liveInstanceOf = (cluster: string): Instance | undefined =>
    [...instances.values()].find((i) => i.cluster === cluster && instanceStatus(i) === 'available');

  function rewrite(action: string, xml: string): string {
    let out = mapBlocks(xml, 'DBCluster', (inner) => {
      const c = clusters.get((child(inner, 'DBClusterIdentifier') ?? '').toLowerCase());
      if (!c) return inner;
      let next = setChild(inner, 'Status', clusterStatus(c));
      const live = liveInstanceOf((child(inner, 'DBClusterIdentifier') ?? '').toLowerCase());
      if (live?.node) {
        next = setChild(next, 'Endpoint', live.node.host);
        next = setChild(next, 'Port', String(live.node.port));
      }
      return next;
    });
    out = mapBlocks(out, 'DBInstance', (inner) => {
      const i = instances.get((child(inner, 'DBInstanceIdentifier') ?? '').toLowerCase());
      if (!i) return inner;
      const status = instanceStatus(i);
      let next = setChild(inner, 'DBInstanceStatus', status);
      next = setChild(
        next,
        'Endpoint',
        status === 'available' && i.node ? `<Address>${i.node.host}</Address><Port>${i.node.port}</Port>` : undefined,
      );
      return next;
    });
    if (action === 'DescribeDBClusterSnapshots' || action === 'CopyDBClusterSnapshot') {
      out = mapBlocks(out, 'DBClusterSnapshot', (inner) => {
        const at = copies.get(child(inner, 'DBClusterSnapshotIdentifier') ?? '');
        return at === undefined
          ? inner
          : setChild(inner, 'Status', Date.now() - at >= copyMs ? 'available' : 'creating');
      });
    }
    return out;
  }

  /** Refusals AWS documents that moto does not make; undefined to let the request through. */
  function refuse(action: string, p: Record<string, string>): { code: string; message: string } | undefined {
    if (action === 'CreateDBInstance' && p.DBClusterIdentifier) {
      const c = clusters.get(p.DBClusterIdentifier.toLowerCase());
      if (c && clusterStatus(c) !== 'available')
        return {
          code: 'InvalidDBClusterStateFault',
          message: `DBCluster ${p.DBClusterIdentifier} is not in available state.`,
        };
    }
    if (action === 'RestoreDBClusterFromSnapshot') {
      const snap = p.SnapshotIdentifier ?? '';
      const at = copies.get(snap);
      if (at !== undefined && Date.now() - at < copyMs)
        return {
          code: 'InvalidDBClusterSnapshotStateFault',
          message: `DBClusterSnapshot ${snap} is not in available state.`,
        };
      if (!storage.has(snap))
        return {
          code: 'InternalFailure',
          message: `test setup: snapshot ${snap} has no storage (take it with snapshotOldPrimary)`,
        };
    }
    return undefined;
  }

  /** What moto accepted, reflected in the storage and servers behind the clusters. */
  function accept(action: string, region: string, p: Record<string, string>): void {
    if (action === 'CopyDBClusterSnapshot') {
      const from = storage.get(p.SourceDBClusterSnapshotIdentifier ?? '');
      if (from) storage.set(p.TargetDBClusterSnapshotIdentifier!, from);
      copies.set(p.TargetDBClusterSnapshotIdentifier!, Date.now());
    }
    if (action === 'RestoreDBClusterFromSnapshot') {
      const id = p.DBClusterIdentifier!.toLowerCase();
      const dataDir = join(opts.dir, 'clusters', id);
      const c: Restored = {
        region,
        snapshot: p.SnapshotIdentifier!,
        at: Date.now(),
        storage: dataDir,
        copied: false,
        ready: Promise.resolve(),
      };
      c.ready = copyDir(storage.get(p.SnapshotIdentifier!)!, dataDir).then(() => {
        c.copied = true;
      });
      clusters.set(id, c);
    }
    if (action === 'CreateDBInstance' && p.DBClusterIdentifier && clusters.has(p.DBClusterIdentifier.toLowerCase())) {
      const cluster = p.DBClusterIdentifier.toLowerCase();
      const i: Instance = { cluster, at: Date.now() };
      instances.set(p.DBInstanceIdentifier!.toLowerCase(), i);
      const c = clusters.get(cluster)!;
      void c.ready
        .then(async () => {
          const node: PgNode = { region: c.region, dataDir: c.storage, port: await freePort(), host: '127.0.0.1' };
          await startOnStorage(opts.pgBin, c.storage, node);
          i.node = node;
        })
        .catch((err: unknown) => {
          i.failed = String(err);
          console.error(`rds-restore: instance ${p.DBInstanceIdentifier} of ${cluster} did not start: ${i.failed}`);
        });
    }
    if (action === 'DeleteDBInstance') {
      const i = instances.get((p.DBInstanceIdentifier ?? '').toLowerCase());
      if (i?.node) void stop(opts.pgBin, i.node, 'immediate');
      instances.delete((p.DBInstanceIdentifier ?? '').toLowerCase());
    }
  }

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const cloudwatch = String(req.headers['x-amz-target'] ?? '').startsWith('GraniteServiceVersion20100801.');
        const params = cloudwatch ? {} : Object.fromEntries(new URLSearchParams(body.toString('utf8')));
        const action = params.Action ?? '';
        const region = /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(req.headers.authorization ?? '')?.[1] ?? 'us-east-1';
        const send = (status: number, headers: Record<string, string>, text: string): void => {
          if (!cloudwatch) log.push({ action, region, status, params });
          res.writeHead(status, headers).end(text);
        };
        try {
          if (opts.sim && (cloudwatch || SIM_ACTIONS.has(action))) {
            const r = await forward(opts.sim.url, req, body);
            send(r.status, r.headers, r.body);
            return;
          }
          const refusal = refuse(action, params);
          if (refusal) {
            send(
              refusal.code === 'InternalFailure' ? 500 : 400,
              { 'Content-Type': 'text/xml' },
              errorXml(refusal.code, refusal.message),
            );
            return;
          }
          const r = await forward(opts.motoUrl, req, body);
          if (r.status === 200) {
            accepted[action] = (accepted[action] ?? 0) + 1;
            accept(action, region, params);
          }
          send(r.status, r.headers, r.status === 200 ? rewrite(action, r.body) : r.body);
        } catch (err) {
          send(500, { 'Content-Type': 'text/xml' }, errorXml('InternalFailure', String(err)));
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    log,
    accepted: (action) => accepted[action] ?? 0,
    async snapshotOldPrimary(region, cluster, dataDir) {
      if (existsSync(join(dataDir, 'postmaster.pid')))
        throw new Error(
          `${dataDir} belongs to a running server: stop it first (a snapshot is of storage at rest here)`,
        );
      const id = await createUnplannedFailoverSnapshot(opts.motoUrl, region, cluster);
      const dir = join(opts.dir, 'snapshots', id.replace(/[^A-Za-z0-9-]/g, '-'));
      await copyDir(dataDir, dir);
      storage.set(id, dir);
      return id;
    },
    restoredNode: (cluster) => liveInstanceOf(cluster.toLowerCase())?.node,
    async close() {
      await Promise.allSettled(
        [...instances.values()].filter((i) => i.node).map((i) => stop(opts.pgBin, i.node!, 'immediate')),
      );
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      rmSync(opts.dir, { recursive: true, force: true });
    },
  };
}

export interface Forwarded {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends a request the test's proxy received on to `target` (moto, a simulator) and reads the whole answer. */
export function forward(target: string, req: IncomingMessage, body: Buffer): Promise<Forwarded> {
  const url = new URL(req.url ?? '/', target);
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, host: url.host, 'content-length': String(body.length) };
    const out = request(url, { method: req.method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 500,
          headers: Object.fromEntries(
            Object.entries(res.headers).filter(
              ([k, v]) => typeof v === 'string' && !['content-length', 'transfer-encoding', 'connection'].includes(k),
            ) as [string, string][],
          ),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    out.on('error', reject);
    out.end(body);
  });
}
