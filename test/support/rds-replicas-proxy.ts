// moto in front of the rds-postgres-replicas provider, with the documented behaviour moto lacks.
// Every request goes to moto (RDS, CloudWatch, Route 53 alike) and moto keeps the instances; this
// proxy only adds what AWS documents and moto 5 does not do (checked in moto/rds/models.py):
// - PromoteReadReplica: moto flips the instance at once and keeps ReadReplicaSourceDBInstanceIdentifier.
//   AWS ("Promoting a read replica"): the instance reboots (DBInstanceStatus modifying for a while),
//   then is available with no source; a second call on an instance that is no longer a replica is
//   InvalidDBInstanceState.
// - CreateDBInstanceReadReplica: moto overwrites an instance of the same identifier; AWS refuses it
//   with DBInstanceAlreadyExists.
// It also counts what moto accepted per action, and can lose the answer to a request moto took
// (the worker's view of a crash or a cut connection after AWS accepted the call).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { forward } from './rds-restore';

export interface RdsReplicasProxy {
  url: string;
  /** Set before the first request: moto's URL. */
  upstream: string;
  /** Calls moto answered 200, per action and region. */
  accepted(action: string, region?: string): number;
  /** The next `action` goes to moto, and its answer is thrown away with the connection. */
  loseAnswerOnce(action: string): void;
  /** How long a promotion shows status modifying. */
  promotionMs: number;
  /**
   * Awaited after moto accepted a call and before the answer goes back: a test does there what
   * RDS does to the databases behind the API (promotes the replica's PostgreSQL, makes a new
   * replica stream from its source).
   */
  onAccepted?: (action: string, region: string, params: Record<string, string>) => Promise<void>;
  close(): Promise<void>;
}

const errorXml = (code: string, message: string): string =>
  `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>`;

export async function startRdsReplicasProxy(): Promise<RdsReplicasProxy> {
  const accepted: { action: string; region: string }[] = [];
  const lose = new Set<string>();
  /** region|identifier → when PromoteReadReplica was accepted. */
  const promoted = new Map<string, number>();
  const state = { upstream: '', promotionMs: 300 };
  const hooks: Pick<RdsReplicasProxy, 'onAccepted'> = {};

  /** Asks moto for one instance, as the provider would (region-signed headers copied from the caller). */
  async function exists(req: IncomingMessage, id: string): Promise<{ found: boolean; replica: boolean }> {
    const body = Buffer.from(
      new URLSearchParams({
        Action: 'DescribeDBInstances',
        Version: '2014-10-31',
        DBInstanceIdentifier: id,
      }).toString(),
    );
    const r = await forward(state.upstream, req, body);
    return { found: r.status === 200, replica: /<ReadReplicaSourceDBInstanceIdentifier>[^<]+</.test(r.body) };
  }

  /** Each <DBInstance> as AWS would show it: a promotion in progress, then no source. */
  function rewrite(region: string, xml: string): string {
    return xml.replace(/<DBInstance>([\s\S]*?)<\/DBInstance>/g, (block) => {
      const id = /<DBInstanceIdentifier>([^<]+)<\/DBInstanceIdentifier>/.exec(block)?.[1] ?? '';
      const at = promoted.get(`${region}|${id}`);
      if (at === undefined) return block;
      if (Date.now() - at < state.promotionMs)
        return block.replace(
          /<DBInstanceStatus>[^<]*<\/DBInstanceStatus>/,
          '<DBInstanceStatus>modifying</DBInstanceStatus>',
        );
      return block.replace(/<ReadReplicaSourceDBInstanceIdentifier>[^<]*<\/ReadReplicaSourceDBInstanceIdentifier>/, '');
    });
  }

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const query = /x-www-form-urlencoded/.test(String(req.headers['content-type'] ?? ''));
        const params = query ? Object.fromEntries(new URLSearchParams(body.toString('utf8'))) : {};
        const action = params.Action ?? '';
        const region = /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(req.headers.authorization ?? '')?.[1] ?? 'us-east-1';
        const id = params.DBInstanceIdentifier ?? '';
        try {
          if (action === 'PromoteReadReplica') {
            const known = promoted.has(`${region}|${id}`);
            const now = await exists(req, id);
            if (now.found && (known || !now.replica)) {
              res
                .writeHead(400, { 'Content-Type': 'text/xml' })
                .end(errorXml('InvalidDBInstanceState', `DB Instance ${id} is not a read replica.`));
              return;
            }
          }
          if (action === 'CreateDBInstanceReadReplica' && (await exists(req, id)).found) {
            res
              .writeHead(400, { 'Content-Type': 'text/xml' })
              .end(errorXml('DBInstanceAlreadyExists', `DB instance already exists`));
            return;
          }
          const r = await forward(state.upstream, req, body);
          if (r.status === 200 && action) {
            accepted.push({ action, region });
            if (action === 'PromoteReadReplica') promoted.set(`${region}|${id}`, Date.now());
            if (action === 'CreateDBInstanceReadReplica') promoted.delete(`${region}|${id}`);
            await hooks.onAccepted?.(action, region, params);
            if (action === 'ModifyDBInstance' && params.NewDBInstanceIdentifier) {
              const at = promoted.get(`${region}|${id}`);
              promoted.delete(`${region}|${id}`);
              if (at !== undefined) promoted.set(`${region}|${params.NewDBInstanceIdentifier}`, at);
            }
          }
          if (lose.delete(action)) {
            res.destroy();
            return;
          }
          res.writeHead(r.status, r.headers).end(r.status === 200 && query ? rewrite(region, r.body) : r.body);
        } catch (err) {
          res.writeHead(500, { 'Content-Type': 'text/xml' }).end(errorXml('InternalFailure', String(err)));
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get upstream() {
      return state.upstream;
    },
    set upstream(v: string) {
      state.upstream = v;
    },
    get promotionMs() {
      return state.promotionMs;
    },
    set promotionMs(v: number) {
      state.promotionMs = v;
    },
    get onAccepted() {
      return hooks.onAccepted;
    },
    set onAccepted(fn) {
      hooks.onAccepted = fn;
    },
    accepted: (action, region) =>
      accepted.filter((a) => a.action === action && (region === undefined || a.region === region)).length,
    loseAnswerOnce: (action) => void lose.add(action),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
