// A Temporal server that asks of its clients what Temporal Cloud, or a cluster a bank secures
// itself, asks: TLS with a client certificate (mTLS), or TLS and an API key, which the server's
// own JWT authorizer checks against a key set served here (a Cloud API key is a bearer token too).
// It is the full server the replicated control plane runs (src/stack/control-plane.ts), one
// cluster on SQLite; its certificates come from openssl, which PostgreSQL's packages bring.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import {
  clusterArgv,
  clusterConfigYaml,
  ensureTemporalServer,
  writeClusterFiles,
  type ClusterSpec,
} from '../../src/stack/control-plane';
import { freePortRun } from '../../src/lib/net';
import { SEARCH_ATTRIBUTES } from '../../src/stack/temporal';
import { waitFor } from './wait';

const KEYWORD = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;

export interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, in `dir`. */
export function makePki(dir: string): Pki {
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl(
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=regionshift test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ); // prettier-ignore
  const leaf = (name: string, cn: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext);
    openssl(
      'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`,
      '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`),
    ); // prettier-ignore
    openssl(
      'x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`),
    ); // prettier-ignore
  };
  leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  leaf('client', 'regionshift', 'extendedKeyUsage=clientAuth\n');
  return {
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}

/** Signs API keys the way an issuer does: RS256 JWTs whose key set it serves over HTTP. */
export interface KeyIssuer {
  jwksUrl: string;
  /** A key for `permissions` ("default:admin", "temporal-system:admin"), valid for an hour. */
  issue(permissions: string[], signer?: KeyObject): string;
  close(): Promise<void>;
}

export async function startKeyIssuer(): Promise<KeyIssuer> {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomUUID();
  const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }] });
  const server: Server = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(jwks),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
  return {
    jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
    issue(permissions, signer = privateKey) {
      const now = Math.floor(Date.now() / 1000);
      const body = `${b64({ alg: 'RS256', typ: 'JWT', kid })}.${b64({ sub: 'regionshift-test', permissions, iat: now, exp: now + 3600 })}`;
      return `${body}.${sign('sha256', Buffer.from(body), signer).toString('base64url')}`;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface SecuredTemporal {
  address: string;
  stop(): Promise<void>;
}

/**
 * One cluster whose frontend takes TLS only. `mtls`: a client certificate signed by the CA is
 * required. `apiKey`: any TLS client, but every call needs a bearer token the issuer signed; the
 * server's own workers reach it through its internal frontend, as Temporal's docs advise for a
 * cluster with an authorizer. The namespace `default` and the runs' search attributes are set up
 * with an admin's key.
 */
export async function startSecuredTemporal(
  dir: string,
  pki: Pki,
  auth: { mtls: true } | { apiKey: KeyIssuer },
): Promise<SecuredTemporal> {
  const bin = await ensureTemporalServer();
  // The frontend, history, matching and worker take two ports each, the HTTP API one, and the
  // internal frontend two more.
  const port = await freePortRun(11);
  const spec: ClusterSpec = { name: 'secured', initialFailoverVersion: 1, port, dir };
  writeClusterFiles(spec); // its dynamic config; config.yaml is written again below, secured
  const config = parse(clusterConfigYaml(spec)) as Record<string, Record<string, unknown>>;
  const server = { certFile: pki.serverCert, keyFile: pki.serverKey };
  const trustCa = { serverName: 'localhost', rootCaFiles: [pki.ca] };
  config.global!.tls = {
    frontend: {
      server: { ...server, requireClientAuth: 'mtls' in auth, clientCaFiles: [pki.ca] },
      client: trustCa,
    },
    systemWorker: { certFile: pki.clientCert, keyFile: pki.clientKey, client: trustCa },
  };
  const services: string[] = ['frontend', 'history', 'matching', 'worker'];
  if ('apiKey' in auth) {
    config.global!.authorization = {
      jwtKeyProvider: { keySourceURIs: [auth.apiKey.jwksUrl], refreshInterval: '1m' },
      permissionsClaimName: 'permissions',
      authorizer: 'default',
      claimMapper: 'default',
    };
    config.services!['internal-frontend'] = {
      rpc: { grpcPort: port + 9, membershipPort: port + 10, bindOnLocalHost: true },
    };
    services.push('internal-frontend');
  }
  writeFileSync(join(dir, 'config.yaml'), stringify(config));
  const [file, ...args] = clusterArgv(bin, spec);
  const log = join(dir, 'server.log');
  const child = spawn(file!, [...args, ...services.flatMap((s) => ['--service', s])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = createWriteStream(log);
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  const address = `127.0.0.1:${port}`;
  const credentials = {
    tls: {
      serverRootCACertificate: readFileSync(pki.ca),
      clientCertPair: { crt: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) },
    },
    ...('apiKey' in auth ? { apiKey: auth.apiKey.issue(['temporal-system:admin', 'default:admin']) } : {}),
  };
  try {
    await waitFor(
      `the secured Temporal on ${address} to register namespace default (log: ${log})`,
      async () => {
        const conn = await Connection.connect({ address, connectTimeout: '2s', ...credentials });
        const unlessThere = (err: Error) => {
          if (!err.message.includes('already')) throw err;
        };
        try {
          await conn.workflowService
            .registerNamespace({ namespace: 'default', workflowExecutionRetentionPeriod: msToTs('1 day') })
            .catch(unlessThere);
          // The runs' search attributes, as `stack up` and `control-plane init` add them.
          await conn.operatorService
            .addSearchAttributes({
              namespace: 'default',
              searchAttributes: Object.fromEntries(SEARCH_ATTRIBUTES.map((n) => [n, KEYWORD])),
            })
            .catch(unlessThere);
        } finally {
          await conn.close();
        }
        return true;
      },
      60_000,
      500,
    );
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return { address, stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
