// regionshift against a Temporal that asks for credentials, as Temporal Cloud does and as a bank's
// own clusters should: mTLS (temporal.tls with a client certificate) or TLS and an API key
// (temporal.apiKeyEnv). A control worker, started with `regionshift worker` as in production, makes
// its version current and runs its warm-up workflow; a client made the way the CLI, the intake and
// the Slack bot make theirs then reads that run. Without the credentials the server refuses, and
// a credential regionshift cannot read is named before anything connects.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseYaml } from '../src/lib/config/load';
import { CredentialsError } from '../src/lib/config/temporal-credentials';
import { Config } from '../src/lib/config/schema';
import { connect } from '../src/lib/runs/client';
import {
  makePki,
  startKeyIssuer,
  startSecuredTemporal,
  type KeyIssuer,
  type Pki,
  type SecuredTemporal,
} from './support/secured-temporal';
import { problemsOf } from './support/config-problems';
import { runCli, startCliWorker, type CliWorker } from './support/stack-env';

/** The config's only service, never touched: a control worker and a client need only `temporal`. */
const LEDGER = [
  'services:',
  '  - name: ledger',
  '    regions: [us-west-2, us-east-1]',
  '    database: { provider: postgres-streaming, regions: { us-west-2: { host: 127.0.0.1, port: 1, dataDir: a }, us-east-1: { host: 127.0.0.1, port: 2, dataDir: b } } }',
  '    traffic: { provider: route53, hostedZone: z., recordName: r.z., endpoints: { us-west-2: a., us-east-1: b. } }',
  '    policy: { approval: { planned: none, unplanned: none } }',
];

/** A config with these `temporal` lines and the one service. */
function writeConfig(dir: string, name: string, temporal: string[]): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, ['temporal:', ...temporal.map((l) => `  ${l}`), ...LEDGER].join('\n') + '\n');
  return file;
}

/** `regionshift worker --control-only`, as a deploy starts it. */
function startControlWorker(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<CliWorker> {
  return startCliWorker(['--control-only', '--config', configFile], { ...process.env, ...env });
}

async function stopWorker(w: CliWorker | undefined): Promise<void> {
  if (!w || w.child.exitCode !== null) return;
  const exited = new Promise((resolve) => w.child.once('exit', resolve));
  w.child.kill('SIGTERM');
  await exited;
}

/** The worker warmed up over its own connection; the CLI's client, on another, sees that run completed. */
async function expectWarmedUpAndVisible(configFile: string, worker: CliWorker, env: NodeJS.ProcessEnv = {}) {
  expect(worker.output()).toMatch(/version=\S+; warmed up in \d+ ms/);
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const client = await connect(loadConfig(configFile));
    try {
      const runs = [];
      for await (const r of client.workflow.list({ query: `WorkflowType = 'warmUp'` })) runs.push(r);
      expect(runs.map((r) => r.status.name)).toContain('COMPLETED');
    } finally {
      await client.connection.close();
    }
  } finally {
    process.env = saved;
  }
}

describe('a Temporal that asks for a client certificate (mTLS)', () => {
  let dir: string;
  let pki: Pki;
  let temporal: SecuredTemporal;
  let worker: CliWorker | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regionshift-mtls-'));
    pki = makePki(dir);
    temporal = await startSecuredTemporal(join(dir, 'server'), pki, { mtls: true });
  }, 180_000);

  afterAll(async () => {
    await stopWorker(worker);
    await temporal?.stop();
  });

  it('a control worker and a client connect with the certificate temporal.tls names', async () => {
    const file = writeConfig(dir, 'mtls', [
      `address: ${temporal.address}`,
      `tls: { clientCert: ${pki.clientCert}, clientKey: ${pki.clientKey}, serverCA: ${pki.ca} }`,
    ]);
    worker = await startControlWorker(file);
    await expectWarmedUpAndVisible(file, worker);
  }, 150_000);

  it('is refused without the client certificate, or without trust in the CA that signed the server', async () => {
    const noCert = writeConfig(dir, 'no-cert', [`address: ${temporal.address}`, `tls: { serverCA: ${pki.ca} }`]);
    const systemRoots = writeConfig(dir, 'system-roots', [`address: ${temporal.address}`, 'tls: true']);
    const plaintext = writeConfig(dir, 'plaintext', [`address: ${temporal.address}`]);
    // The handshake fails on either side and gRPC only ever says the deadline passed.
    const unreachable = `cannot reach Temporal at ${temporal.address} (Failed to connect before the deadline)`;
    await expect(connect(loadConfig(noCert))).rejects.toThrow(
      `${unreachable}; is it up, and do temporal.tls's certificate and CA match the server's?`,
    );
    await expect(connect(loadConfig(systemRoots))).rejects.toThrow(
      `${unreachable}; is it up, and do temporal.tls's certificate and CA match the server's?`,
    );
    await expect(connect(loadConfig(plaintext))).rejects.toThrow(`${unreachable}; is the stack up?`);
  }, 60_000);

  it('a certificate file that cannot be read is named, with its key and path, before anything connects', async () => {
    const missing = join(dir, 'nowhere', 'client.key');
    const file = writeConfig(dir, 'missing-key', [
      `address: ${temporal.address}`,
      `tls: { clientCert: ${pki.clientCert}, clientKey: ${missing}, serverCA: ${pki.ca} }`,
    ]);
    expect(problemsOf(() => loadConfig(file))).toEqual([
      `${file}: temporal.tls.clientKey: cannot read ${missing} (ENOENT)`,
    ]);
    const r = await runCli(['worker', '--control-only', '--config', file], process.env, 60_000);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`temporal.tls.clientKey: cannot read ${missing} (ENOENT)`);
    // Relative paths are the config file's folder's, as for every other file the config names.
    const relative = writeConfig(dir, 'relative', [
      `address: ${temporal.address}`,
      'tls: { clientCert: client.pem, clientKey: client.key, serverCA: ca.pem }',
    ]);
    expect(loadConfig(relative).temporal.tls).toMatchObject({ clientCert: pki.clientCert, serverCA: pki.ca });
  }, 90_000);
});

describe('a Temporal that asks for an API key', () => {
  let dir: string;
  let issuer: KeyIssuer;
  let temporal: SecuredTemporal;
  let worker: CliWorker | undefined;
  let file: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regionshift-api-key-'));
    const pki = makePki(dir);
    issuer = await startKeyIssuer();
    temporal = await startSecuredTemporal(join(dir, 'server'), pki, { apiKey: issuer });
    // TLS with the test's CA: Temporal Cloud's certificates chain to the system's roots instead (tls: true).
    file = writeConfig(dir, 'api-key', [
      `address: ${temporal.address}`,
      'apiKeyEnv: REGIONSHIFT_TEST_API_KEY',
      `tls: { serverCA: ${pki.ca} }`,
    ]);
  }, 180_000);

  afterAll(async () => {
    await stopWorker(worker);
    await temporal?.stop();
    await issuer?.close();
  });

  it('a control worker and a client connect with the key from the variable temporal.apiKeyEnv names', async () => {
    const env = { REGIONSHIFT_TEST_API_KEY: issuer.issue(['default:admin']) };
    worker = await startControlWorker(file, env);
    await expectWarmedUpAndVisible(file, worker, env);
  }, 150_000);

  it('a key the server did not issue is refused; with the variable unset, the variable is named and nothing connects', async () => {
    const { privateKey: stranger } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    process.env.REGIONSHIFT_TEST_API_KEY = issuer.issue(['default:admin'], stranger);
    try {
      await expect(connect(loadConfig(file))).rejects.toThrow(
        new RegExp(
          `^Temporal at ${temporal.address} refused this client's credentials \\(.+\\); check temporal.apiKeyEnv and temporal.tls$`,
        ),
      );
    } finally {
      delete process.env.REGIONSHIFT_TEST_API_KEY;
    }
    await expect(connect(loadConfig(file))).rejects.toThrow(CredentialsError);
    await expect(connect(loadConfig(file))).rejects.toThrow(
      "cannot connect to Temporal: temporal.apiKeyEnv: REGIONSHIFT_TEST_API_KEY is not set in this process's environment",
    );
    const env = { ...process.env };
    delete env.REGIONSHIFT_TEST_API_KEY;
    const r = await runCli(['worker', '--control-only', '--config', file], env, 60_000);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('temporal.apiKeyEnv: REGIONSHIFT_TEST_API_KEY is not set');
  }, 90_000);
});

describe('temporal credentials in the config', () => {
  const parse = (temporal: string) => parseYaml('c.yaml', [`temporal: ${temporal}`, ...LEDGER].join('\n'), Config);

  it('refuses a certificate without its key, an API key over plaintext, and a key pasted where its variable goes', () => {
    expect(problemsOf(() => parse('{ tls: { clientCert: c.pem } }'))).toEqual([
      'c.yaml:1: temporal.tls.clientKey: mTLS needs both clientCert and clientKey (the certificate and its private key)',
    ]);
    expect(problemsOf(() => parse('{ apiKeyEnv: TEMPORAL_API_KEY, tls: false }'))).toEqual([
      'c.yaml:1: temporal.tls: an API key is sent only over TLS: remove tls: false (or apiKeyEnv)',
    ]);
    expect(problemsOf(() => parse('{ apiKeyEnv: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln" }'))).toEqual([
      'c.yaml:1: temporal.apiKeyEnv: an environment variable name, e.g. TEMPORAL_API_KEY (not the key itself)',
    ]);
    expect(parse('{ apiKeyEnv: TEMPORAL_API_KEY, tls: true }').value.temporal).toMatchObject({
      apiKeyEnv: 'TEMPORAL_API_KEY',
      tls: true,
    });
  });
});
