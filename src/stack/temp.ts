// A throw-away local stack's files: a folder under os.tmpdir() holding its REGIONSHIFT_HOME,
// PostgreSQL data directories and a config on free ports, so neither the bench nor the tests
// touch (or are disturbed by) a stack a developer is using.
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from './net';

export type TempRegion = 'us-west-2' | 'us-east-1';

export interface TempStackFiles {
  dir: string;
  /** Its REGIONSHIFT_HOME. */
  home: string;
  configFile: string;
  temporalPort: number;
  uiPort: number;
  motoPort: number;
  codecServerPort: number;
  pg: Record<TempRegion, { port: number; dataDir: string }>;
}

export interface TempStackOptions {
  /** mkdtemp prefix, e.g. regionshift-bench- */
  prefix: string;
  /** First line of the config, saying who wrote it. */
  comment: string;
  /** The ledger service's policy block as YAML lines indented by six spaces; absent: the defaults. */
  policy?: string;
  /** DNS TTL of the service's records; absent: the default. */
  ttl?: number;
  /** More of the ledger service's config, as YAML lines indented by four spaces. */
  serviceExtra?: string;
  /** The stand-in approver the policy lists, with a key made in the stack's folder (src/demo/approver.ts); default demo-oncall. */
  approver?: string;
}

/** One service `ledger` on a PostgreSQL pair (us-west-2 writer, us-east-1 standby) and Route 53 in moto. */
export async function writeTempStack(opts: TempStackOptions): Promise<TempStackFiles> {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix));
  // mkdtemp makes the folder 0700; the postgres user must be able to reach the data directories inside.
  chmodSync(dir, 0o755);
  const home = join(dir, 'state');
  const [temporalPort, uiPort, motoPort, codecServerPort, west, east] = (await freePorts(6)) as [number, number, number, number, number, number];
  const configFile = join(dir, 'regionshift.yaml');
  const approver = opts.approver ?? 'demo-oncall';
  writeFileSync(
    configFile,
    `# ${opts.comment}
temporal: { address: 127.0.0.1:${temporalPort}, namespace: default, uiUrl: http://127.0.0.1:${uiPort} }
stack: { temporalPort: ${temporalPort}, temporalUiPort: ${uiPort}, motoPort: ${motoPort}, codecServerPort: ${codecServerPort} }
services:
  - name: ledger
    regions: [us-west-2, us-east-1]
    database:
      provider: postgres-streaming
      regions:
        us-west-2: { host: 127.0.0.1, port: ${west}, dataDir: pg/ledger-us-west-2 }
        us-east-1: { host: 127.0.0.1, port: ${east}, dataDir: pg/ledger-us-east-1 }
    traffic:
      provider: route53
      hostedZone: regionshift.test.
      recordName: ledger.regionshift.test.
${opts.ttl !== undefined ? `      ttl: ${opts.ttl}\n` : ''}      endpoints: { us-west-2: db.us-west-2.regionshift.test., us-east-1: db.us-east-1.regionshift.test. }
      endpointUrl: http://127.0.0.1:${motoPort}
${opts.serviceExtra ? `${opts.serviceExtra}\n` : ''}    policy:
${opts.policy ? `${opts.policy}\n` : ''}      approvers: [{ name: ${approver}, sshKeysFile: keys/${approver}.pub }]
`,
  );
  return {
    dir, home, configFile, temporalPort, uiPort, motoPort, codecServerPort,
    pg: {
      'us-west-2': { port: west, dataDir: join(dir, 'pg', 'ledger-us-west-2') },
      'us-east-1': { port: east, dataDir: join(dir, 'pg', 'ledger-us-east-1') },
    },
  };
}
