// A tiny RDS Query-protocol server for the Aurora global database operations moto lacks
// (SwitchoverGlobalCluster, FailoverGlobalCluster). The real @aws-sdk/client-rds serializes the
// requests and parses these XML answers, so the provider is exercised exactly as against AWS.
//
// The state machine follows the AWS documentation, not observed AWS behaviour:
// - FailoverState (API reference, "FailoverState"): Status pending, then switching-over
//   (switchover) or failing-over (failover); cancelling when the request cannot complete, after
//   which the members return to their previous roles; empty once the operation is over.
//   FromDbClusterArn / ToDbClusterArn name the demoted and promoted clusters; IsDataLossAllowed is
//   true for a failover, false for a switchover.
// - SwitchoverGlobalCluster: the old primary becomes a secondary, the target the writer (RPO 0);
//   both must run the same engine major and minor version ("Performing switchovers for Aurora
//   global databases"). The brief has it sent to the primary's region; the sim enforces that.
// - FailoverGlobalCluster with AllowDataLoss: sent to the target's region, works while the old
//   primary's region is down; when that region is back, Aurora snapshots the old primary as
//   rds:unplanned-global-failover-<cluster>-<timestamp> and makes it a secondary ("Recovering an
//   Amazon Aurora global database from an unplanned outage").
// - RemoveFromGlobalCluster: the cluster leaves the global database as a standalone cluster.
// - A secondary without DB instances (headless) cannot be promoted: InvalidDBClusterStateFault.
// - Errors are Query-protocol <ErrorResponse><Error><Code>; throttling is Code Throttling, HTTP 400.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const ACCOUNT = '123456789012';

export interface SimCluster {
  id: string;
  region: string;
  engineVersion: string;
  /** DB instances in the cluster; 0 is a headless secondary. */
  instances: number;
  status?: string;
}

interface Member {
  arn: string;
  isWriter: boolean;
}

interface Operation {
  kind: 'switchover' | 'failover';
  from: string;
  to: string;
  startedAt: number;
  /** Phases and how long each lasts; the last one ends the operation. */
  phases: { status: string; ms: number }[];
  outcome: 'complete' | 'cancel';
}

interface Snapshot {
  id: string;
  cluster: string;
  region: string;
  type: string;
  created: Date;
}

export interface RdsSimOptions {
  globalId: string;
  engine?: string;
  engineVersion?: string;
  clusters: SimCluster[];
  /** The cluster that starts as the writer (default: the first). */
  writer?: string;
  /** How long each FailoverState phase lasts. */
  phaseMs?: number;
  /**
   * Called when a switchover or failover completes, and awaited before any answer shows the new
   * writer: a test moves the databases standing in for the clusters' writers along with it.
   */
  onWriterChange?: (change: { kind: 'switchover' | 'failover'; from: string; to: string }) => Promise<void>;
}

export interface RdsSim {
  url: string;
  /** Successful (accepted) calls per action. */
  accepted: Record<string, number>;
  /** Every request: action, region it was signed for, parameters. */
  log: { action: string; region: string; params: Record<string, string> }[];
  arnOf(cluster: string): string;
  /** The next `times` calls of `action` answer Throttling. */
  throttle(action: string, times: number): void;
  /** The next call of `action` answers this error. */
  failNext(action: string, code: string, message: string, status?: number): void;
  /** Operations from now on go through cancelling and leave the writer unchanged. */
  setOutcome(outcome: 'complete' | 'cancel'): void;
  setPhaseMs(ms: number): void;
  /** Requests signed for a down region get their connection dropped, as if the region were gone. */
  setRegionDown(region: string, down: boolean): void;
  /** The old primary's region is back after a failover: Aurora snapshots it and makes it a secondary. */
  recoverRegion(region: string): void;
  /** What CloudWatch (also served here, awsJson1_0) reports as a cluster's AuroraGlobalDBRPOLag, in ms. */
  setLag(cluster: string, ms: number): void;
  /** Starts an operation as if someone else had (to test "another operation in progress"). */
  startOperation(kind: 'switchover' | 'failover', toCluster: string): void;
  writer(): string | undefined;
  failoverStatus(): string | undefined;
  members(): { cluster: string; isWriter: boolean }[];
  snapshots(region: string): string[];
  close(): Promise<void>;
}

export async function startRdsSim(opts: RdsSimOptions): Promise<RdsSim> {
  const engine = opts.engine ?? 'aurora-postgresql';
  let globalVersion = opts.engineVersion ?? '15.4';
  let phaseMs = opts.phaseMs ?? 100;
  let outcome: 'complete' | 'cancel' = 'complete';
  const clusters = new Map(opts.clusters.map((c) => [c.id, { ...c, status: c.status ?? 'available' }]));
  const arnOf = (id: string): string => `arn:aws:rds:${clusters.get(id)!.region}:${ACCOUNT}:cluster:${id}`;
  const idOfArn = (arn: string): string | undefined =>
    [...clusters.keys()].find((id) => arnOf(id) === arn || id === arn);
  const writerId = opts.writer ?? opts.clusters[0]!.id;
  let members: Member[] = opts.clusters.map((c) => ({ arn: arnOf(c.id), isWriter: c.id === writerId }));
  let op: Operation | undefined;
  const down = new Set<string>();
  const pendingRecovery = new Set<string>();
  const snapshots: Snapshot[] = [];
  const throttles = new Map<string, number>();
  const failures = new Map<string, { code: string; message: string; status: number }>();
  const accepted: Record<string, number> = {};
  const lags = new Map<string, number>();
  const hooks: Promise<void>[] = [];

  /** The two CloudWatch calls the lag reading makes, in the awsJson1_0 protocol CloudWatch speaks. */
  function cloudwatch(op: string, body: Record<string, unknown>): unknown {
    if (op === 'ListMetrics') {
      const dims = (body.Dimensions ?? []) as { Name: string; Value?: string }[];
      const cluster = dims.find((d) => d.Name === 'DBClusterIdentifier')?.Value;
      return {
        Metrics: [...lags.keys()]
          .filter((c) => !cluster || c === cluster)
          .map((c) => ({
            Namespace: 'AWS/RDS',
            MetricName: body.MetricName,
            Dimensions: [{ Name: 'DBClusterIdentifier', Value: c }],
          })),
      };
    }
    if (op === 'GetMetricData') {
      const queries = body.MetricDataQueries as {
        Id: string;
        MetricStat: { Metric: { Dimensions: { Name: string; Value: string }[] } };
      }[];
      return {
        MetricDataResults: queries.map((q) => {
          const lag = lags.get(
            q.MetricStat.Metric.Dimensions.find((d) => d.Name === 'DBClusterIdentifier')?.Value ?? '',
          );
          // Timestamps are epoch seconds in this protocol.
          return {
            Id: q.Id,
            Label: 'AuroraGlobalDBRPOLag',
            StatusCode: 'Complete',
            Timestamps: lag === undefined ? [] : [Math.floor(Date.now() / 1000)],
            Values: lag === undefined ? [] : [lag],
          };
        }),
      };
    }
    throw new Fault('InvalidAction', `CloudWatch ${op} is not served by the sim`);
  }
  const log: RdsSim['log'] = [];

  /** Moves the operation along its phases by the clock; returns the FailoverState status, if any. */
  function advance(): string | undefined {
    if (!op) return undefined;
    let elapsed = Date.now() - op.startedAt;
    for (const phase of op.phases) {
      if (elapsed < phase.ms) return phase.status;
      elapsed -= phase.ms;
    }
    // Over.
    if (op.outcome === 'complete') {
      members = members.map((m) => ({ ...m, isWriter: m.arn === op!.to }));
      if (opts.onWriterChange) {
        const moved = opts.onWriterChange({ kind: op.kind, from: idOfArn(op.from)!, to: idOfArn(op.to)! });
        // Reported by the next answer (as an InternalFailure), not as an unhandled rejection.
        moved.catch(() => undefined);
        hooks.push(moved);
      }
      if (op.kind === 'failover' && down.has(clusters.get(idOfArn(op.from)!)!.region)) pendingRecovery.add(op.from);
    }
    op = undefined;
    return undefined;
  }

  function begin(kind: 'switchover' | 'failover', from: string, to: string): void {
    const working = kind === 'switchover' ? 'switching-over' : 'failing-over';
    const phases =
      outcome === 'complete'
        ? [
            { status: 'pending', ms: phaseMs },
            { status: working, ms: phaseMs },
          ]
        : [
            { status: 'pending', ms: phaseMs },
            { status: working, ms: phaseMs },
            { status: 'cancelling', ms: phaseMs },
          ];
    op = { kind, from, to, startedAt: Date.now(), phases, outcome };
  }

  class Fault extends Error {
    constructor(
      readonly code: string,
      message: string,
      readonly status = 400,
    ) {
      super(message);
    }
  }

  function globalXml(): string {
    const status = advance();
    const fs =
      op && status
        ? `<FailoverState><Status>${status}</Status><FromDbClusterArn>${op.from}</FromDbClusterArn><ToDbClusterArn>${op.to}</ToDbClusterArn><IsDataLossAllowed>${op.kind === 'failover'}</IsDataLossAllowed></FailoverState>`
        : '';
    const ms = members
      .map(
        (m) =>
          `<GlobalClusterMember><DBClusterArn>${m.arn}</DBClusterArn><IsWriter>${m.isWriter}</IsWriter></GlobalClusterMember>`,
      )
      .join('');
    return (
      `<GlobalClusterIdentifier>${opts.globalId}</GlobalClusterIdentifier><GlobalClusterArn>arn:aws:rds::${ACCOUNT}:global-cluster:${opts.globalId}</GlobalClusterArn>` +
      `<Status>${status ? (op!.kind === 'failover' ? 'failing-over' : 'switching-over') : 'available'}</Status><Engine>${engine}</Engine><EngineVersion>${globalVersion}</EngineVersion>` +
      `<GlobalClusterMembers>${ms}</GlobalClusterMembers>${fs}`
    );
  }

  function clusterXml(id: string): string {
    const c = clusters.get(id)!;
    const inGlobal = members.some((m) => m.arn === arnOf(id));
    const instances = Array.from(
      { length: c.instances },
      (_, i) =>
        `<DBClusterMember><DBInstanceIdentifier>${id}-${i + 1}</DBInstanceIdentifier><IsClusterWriter>${i === 0}</IsClusterWriter></DBClusterMember>`,
    ).join('');
    return (
      `<DBClusterIdentifier>${id}</DBClusterIdentifier><DBClusterArn>${arnOf(id)}</DBClusterArn><Status>${c.status}</Status><Engine>${engine}</Engine>` +
      `<EngineVersion>${c.engineVersion}</EngineVersion><DBClusterMembers>${instances}</DBClusterMembers>${inGlobal ? `<GlobalClusterIdentifier>${opts.globalId}</GlobalClusterIdentifier>` : ''}`
    );
  }

  function snapshotXml(s: Snapshot): string {
    return (
      `<DBClusterSnapshotIdentifier>${s.id}</DBClusterSnapshotIdentifier><DBClusterIdentifier>${s.cluster}</DBClusterIdentifier><SnapshotCreateTime>${s.created.toISOString()}</SnapshotCreateTime>` +
      `<Status>available</Status><SnapshotType>${s.type}</SnapshotType><Engine>${engine}</Engine><DBClusterSnapshotArn>arn:aws:rds:${s.region}:${ACCOUNT}:cluster-snapshot:${s.id}</DBClusterSnapshotArn>`
    );
  }

  function requireGlobal(p: Record<string, string>): void {
    if ((p.GlobalClusterIdentifier ?? '').toLowerCase() !== opts.globalId.toLowerCase()) {
      throw new Fault('GlobalClusterNotFoundFault', `GlobalCluster ${p.GlobalClusterIdentifier} not found.`, 404);
    }
  }

  function handle(action: string, region: string, p: Record<string, string>): string {
    switch (action) {
      case 'DescribeGlobalClusters': {
        if (p.GlobalClusterIdentifier && p.GlobalClusterIdentifier.toLowerCase() !== opts.globalId.toLowerCase()) {
          throw new Fault('GlobalClusterNotFoundFault', `GlobalCluster ${p.GlobalClusterIdentifier} not found.`, 404);
        }
        return `<GlobalClusters><GlobalClusterMember>${globalXml()}</GlobalClusterMember></GlobalClusters>`;
      }
      case 'DescribeDBClusters': {
        const id = idOfArn(p.DBClusterIdentifier ?? '');
        if (!id || clusters.get(id)!.region !== region)
          throw new Fault('DBClusterNotFoundFault', `DBCluster ${p.DBClusterIdentifier} not found.`, 404);
        return `<DBClusters><DBCluster>${clusterXml(id)}</DBCluster></DBClusters>`;
      }
      case 'SwitchoverGlobalCluster':
      case 'FailoverGlobalCluster': {
        requireGlobal(p);
        advance();
        const to = idOfArn(p.TargetDbClusterIdentifier ?? '');
        if (!to) throw new Fault('DBClusterNotFoundFault', `DBCluster ${p.TargetDbClusterIdentifier} not found.`, 404);
        const switchover = action === 'SwitchoverGlobalCluster' || p.AllowDataLoss !== 'true';
        if (op)
          throw new Fault(
            'InvalidGlobalClusterStateFault',
            `Global cluster ${opts.globalId} is already in the middle of a switchover or failover.`,
          );
        const target = members.find((m) => m.arn === arnOf(to));
        if (!target)
          throw new Fault('InvalidGlobalClusterStateFault', `DBCluster ${to} is not a member of ${opts.globalId}.`);
        if (target.isWriter)
          throw new Fault(
            'InvalidGlobalClusterStateFault',
            `DBCluster ${to} is already the primary of ${opts.globalId}.`,
          );
        if (clusters.get(to)!.instances === 0)
          throw new Fault('InvalidDBClusterStateFault', `DBCluster ${to} has no DB instances to promote.`);
        const from = members.find((m) => m.isWriter)!.arn;
        if (switchover) {
          const fromRegion = clusters.get(idOfArn(from)!)!.region;
          if (region !== fromRegion)
            throw new Fault(
              'InvalidParameterValue',
              `SwitchoverGlobalCluster must be called in the primary cluster's region ${fromRegion}, not ${region}.`,
            );
          const mm = (v: string) => v.split('.').slice(0, 2).join('.');
          if (mm(clusters.get(to)!.engineVersion) !== mm(globalVersion)) {
            throw new Fault(
              'InvalidGlobalClusterStateFault',
              `The target cluster's engine version ${clusters.get(to)!.engineVersion} must match the primary's ${globalVersion} for a switchover.`,
            );
          }
        } else if (region !== clusters.get(to)!.region) {
          throw new Fault(
            'InvalidParameterValue',
            `FailoverGlobalCluster must be called in the target cluster's region ${clusters.get(to)!.region}, not ${region}.`,
          );
        }
        begin(switchover ? 'switchover' : 'failover', from, arnOf(to));
        return `<GlobalCluster>${globalXml()}</GlobalCluster>`;
      }
      case 'RemoveFromGlobalCluster': {
        requireGlobal(p);
        const id = idOfArn(p.DbClusterIdentifier ?? '');
        if (!id || clusters.get(id)!.region !== region)
          throw new Fault('DBClusterNotFoundFault', `DBCluster ${p.DbClusterIdentifier} not found in ${region}.`, 404);
        if (!members.some((m) => m.arn === arnOf(id)))
          throw new Fault('GlobalClusterNotFoundFault', `DBCluster ${id} is not a member of ${opts.globalId}.`, 404);
        members = members.filter((m) => m.arn !== arnOf(id));
        return `<GlobalCluster>${globalXml()}</GlobalCluster>`;
      }
      case 'DescribeDBClusterSnapshots': {
        const list = snapshots.filter(
          (s) =>
            s.region === region &&
            (!p.DBClusterIdentifier || s.cluster === p.DBClusterIdentifier) &&
            (!p.DBClusterSnapshotIdentifier || s.id === p.DBClusterSnapshotIdentifier),
        );
        if (p.DBClusterSnapshotIdentifier && list.length === 0)
          throw new Fault(
            'DBClusterSnapshotNotFoundFault',
            `DBClusterSnapshot ${p.DBClusterSnapshotIdentifier} not found.`,
            404,
          );
        return `<DBClusterSnapshots>${list.map((s) => `<DBClusterSnapshot>${snapshotXml(s)}</DBClusterSnapshot>`).join('')}</DBClusterSnapshots>`;
      }
      case 'CopyDBClusterSnapshot': {
        const src = snapshots.find((s) => s.region === region && s.id === p.SourceDBClusterSnapshotIdentifier);
        if (!src)
          throw new Fault(
            'DBClusterSnapshotNotFoundFault',
            `DBClusterSnapshot ${p.SourceDBClusterSnapshotIdentifier} not found.`,
            404,
          );
        if (snapshots.some((s) => s.region === region && s.id === p.TargetDBClusterSnapshotIdentifier)) {
          throw new Fault(
            'DBClusterSnapshotAlreadyExistsFault',
            `DBClusterSnapshot ${p.TargetDBClusterSnapshotIdentifier} already exists.`,
          );
        }
        const copy: Snapshot = {
          id: p.TargetDBClusterSnapshotIdentifier!,
          cluster: src.cluster,
          region,
          type: 'manual',
          created: new Date(),
        };
        snapshots.push(copy);
        return `<DBClusterSnapshot>${snapshotXml(copy)}</DBClusterSnapshot>`;
      }
      default:
        throw new Fault('InvalidAction', `The action ${action} is not valid for this web service.`);
    }
  }

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      if (target.startsWith('GraniteServiceVersion20100801.')) {
        const op = target.split('.')[1]!;
        res.setHeader('Content-Type', 'application/x-amz-json-1.0');
        try {
          const out = cloudwatch(
            op,
            JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>,
          );
          res.writeHead(200).end(JSON.stringify(out));
        } catch (err) {
          res
            .writeHead(400)
            .end(JSON.stringify({ __type: err instanceof Fault ? err.code : 'InternalFailure', message: String(err) }));
        }
        return;
      }
      const params = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      const action = params.Action ?? '';
      const region =
        /Credential=[^/]+\/\d{8}\/([^/]+)\/rds\//.exec(req.headers.authorization ?? '')?.[1] ?? 'us-east-1';
      log.push({ action, region, params });
      if (down.has(region)) {
        req.socket.destroy();
        return;
      }
      const send = (status: number, body: string): void => {
        res.writeHead(status, { 'Content-Type': 'text/xml', 'x-amzn-RequestId': `sim-${log.length}` });
        res.end(body);
      };
      const error = (code: string, message: string, status: number): void =>
        send(
          status,
          `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>sim-${log.length}</RequestId></ErrorResponse>`,
        );
      const left = throttles.get(action) ?? 0;
      if (left > 0) {
        throttles.set(action, left - 1);
        error('Throttling', 'Rate exceeded', 400);
        return;
      }
      const failure = failures.get(action);
      if (failure) {
        failures.delete(action);
        error(failure.code, failure.message, failure.status);
        return;
      }
      void (async () => {
        try {
          const result = handle(action, region, params);
          // Nobody sees the new writer before the stand-ins have moved with it.
          await Promise.all(hooks);
          accepted[action] = (accepted[action] ?? 0) + 1;
          send(
            200,
            `<${action}Response xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>sim-${log.length}</RequestId></ResponseMetadata></${action}Response>`,
          );
        } catch (err) {
          if (err instanceof Fault) error(err.code, err.message, err.status);
          else error('InternalFailure', String(err), 500);
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    accepted,
    log,
    arnOf,
    throttle: (action, times) => throttles.set(action, times),
    failNext: (action, code, message, status = 400) => failures.set(action, { code, message, status }),
    setOutcome: (o) => {
      outcome = o;
    },
    setPhaseMs: (ms) => {
      phaseMs = ms;
    },
    setRegionDown: (region, isDown) => (isDown ? down.add(region) : down.delete(region)),
    recoverRegion(region) {
      down.delete(region);
      advance();
      for (const arn of [...pendingRecovery]) {
        const id = idOfArn(arn)!;
        if (clusters.get(id)!.region !== region) continue;
        const stamp = new Date().toISOString().replace(/[T:]/g, '-').slice(0, 16);
        snapshots.push({
          id: `rds:unplanned-global-failover-${id}-${stamp}`,
          cluster: id,
          region,
          type: 'automated',
          created: new Date(),
        });
        members = members.map((m) => (m.arn === arn ? { ...m, isWriter: false } : m));
        pendingRecovery.delete(arn);
      }
    },
    setLag: (cluster, ms) => lags.set(cluster, ms),
    startOperation(kind, toCluster) {
      begin(kind, members.find((m) => m.isWriter)!.arn, arnOf(toCluster));
    },
    writer: () => {
      advance();
      const w = members.find((m) => m.isWriter);
      return w ? idOfArn(w.arn) : undefined;
    },
    failoverStatus: () => advance(),
    members: () => {
      advance();
      return members.map((m) => ({ cluster: idOfArn(m.arn)!, isWriter: m.isWriter }));
    },
    snapshots: (region) => snapshots.filter((s) => s.region === region).map((s) => s.id),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // The SDK keeps connections alive; without this close() waits for them to time out.
        server.closeAllConnections();
      }),
  };
}
