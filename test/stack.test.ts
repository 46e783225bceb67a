// The embedded local stack, end to end with real processes: `regionshift stack up` from
// nothing, then each component is used for real (a workflow, a replicated write, a Route 53
// call), then idempotence, `down`, and a refused `up` on a taken port. One stack, reused.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client as PgClient } from 'pg';
import { CreateHostedZoneCommand, ListHostedZonesCommand, Route53Client } from '@aws-sdk/client-route-53';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { ENCODING, KEY_ID_METADATA } from '../src/lib/codec/aes-gcm';
import { codecKeysFile } from '../src/lib/codec/env';
import { loadConfig } from '../src/lib/config/load';
import { postgresDatabase } from '../src/lib/config/schema';
import { ensureLedger, nodeOf } from '../src/demo/ledger';
import { readState } from '../src/stack/stack';
import { freePortRun, freePorts, isPortFree } from '../src/lib/net';
import { rawHistory } from './support/raw-history';
import { killLeftovers, makeTempStack, processesOf, runCli, type CliResult, type TempStack } from './support/stack-env';
import { waitFor } from './support/wait';

interface Component {
  name: string;
  address: string | null;
  pid: number | null;
  health: 'up' | 'down' | 'skipped';
  role?: 'primary' | 'standby';
  streaming?: boolean;
  detail?: string;
}
interface Status {
  components: Component[];
  temporalUi: string;
}

const SEARCH_ATTRIBUTES = [
  'RegionshiftService',
  'RegionshiftSource',
  'RegionshiftTarget',
  'RegionshiftMode',
  'RegionshiftStep',
  'RegionshiftTrigger',
];

let stack: TempStack;
let firstUp: CliResult;

function show(r: CliResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

async function status(): Promise<Status> {
  const r = await runCli(['stack', 'status', '--json'], stack.env);
  try {
    return JSON.parse(r.stdout) as Status;
  } catch {
    throw new Error(`stack status --json printed no JSON:\n${show(r)}`);
  }
}

function component(s: Status, name: string): Component {
  const c = s.components.find((x) => x.name === name);
  if (!c) throw new Error(`no component ${name} in ${s.components.map((x) => x.name).join(', ')}`);
  return c;
}

/** Running and not a zombie (this machine's init may be slow to reap orphans). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

function postmasterAlive(dataDir: string): boolean {
  const file = join(dataDir, 'postmaster.pid');
  if (!existsSync(file)) return false;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 && alive(pid);
}

beforeAll(async () => {
  stack = await makeTempStack({ app: true });
  firstUp = await runCli(['stack', 'up'], stack.env);
});

afterAll(async () => {
  if (!stack) return;
  const down = await runCli(['stack', 'down'], stack.env);
  const left = await killLeftovers(stack);
  if (left.length)
    console.error(`stack test: killed leftovers after \`stack down\` (${show(down)}):\n${left.join('\n')}`);
  stack.remove();
});

describe('regionshift stack', () => {
  it('comes up from nothing with every component healthy', async () => {
    expect(firstUp.code, show(firstUp)).toBe(0);
    expect(firstUp.stdout).toContain(`Temporal UI: http://127.0.0.1:${stack.uiPort}`);

    const s = await status();
    expect(s.temporalUi).toBe(`http://127.0.0.1:${stack.uiPort}`);
    const names = s.components.map((c) => c.name);
    expect(names.slice(0, 5)).toEqual([
      'temporal',
      'temporal-ui',
      'moto',
      'postgres:ledger:us-west-2',
      'postgres:ledger:us-east-1',
    ]);
    expect(names).toContain('worker:us-west-2');
    expect(names).toContain('worker:us-east-1');
    for (const c of s.components) {
      // Workers are skipped only while the worker command does not exist yet.
      const healthy = c.name.startsWith('worker:') ? ['up', 'skipped'] : ['up'];
      expect(healthy, `${c.name}: ${c.health} ${c.detail ?? ''}`).toContain(c.health);
      if (c.health === 'up') expect(c.pid, c.name).toBeGreaterThan(0);
    }
    expect(component(s, 'temporal').address).toBe(`127.0.0.1:${stack.temporalPort}`);
    expect(component(s, 'moto').address).toBe(`http://127.0.0.1:${stack.motoPort}`);
    expect(component(s, 'postgres:ledger:us-west-2')).toMatchObject({
      role: 'primary',
      address: `127.0.0.1:${stack.pg['us-west-2']!.port}`,
    });
    expect(component(s, 'postgres:ledger:us-east-1')).toMatchObject({ role: 'standby', streaming: true });
  });

  it('runs a workflow through the real Temporal server, with the search attributes registered', async () => {
    const address = `127.0.0.1:${stack.temporalPort}`;
    const connection = await Connection.connect({ address });
    const native = await NativeConnection.connect({ address });
    try {
      const attrs = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
      expect(Object.keys(attrs.customAttributes ?? {})).toEqual(expect.arrayContaining(SEARCH_ATTRIBUTES));

      const taskQueue = `stack-test-${process.pid}`;
      const worker = await Worker.create({
        connection: native,
        namespace: 'default',
        taskQueue,
        workflowsPath: join(__dirname, 'support', 'echo-workflow.ts'),
      });
      const client = new Client({ connection, namespace: 'default' });
      const result = await worker.runUntil(
        client.workflow.execute('echo', {
          taskQueue,
          workflowId: `stack-test-echo-${Date.now()}`,
          args: ['over the wire'],
        }),
      );
      expect(result).toBe('over the wire');
    } finally {
      await connection.close();
      await native.close();
    }
  });

  it('encrypts payloads with a key kept in its state dir; CLI commands find it; the UI decrypts through the codec server', async () => {
    const file = codecKeysFile(stack.home);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const keyId = /^REGIONSHIFT_CODEC_KEY_ID=(.+)$/m.exec(readFileSync(file, 'utf8'))![1]!;
    expect(firstUp.stdout).toContain(`made the stack's payload encryption key: ${file}`);

    const s = await status();
    const codecUrl = `http://127.0.0.1:${stack.codecServerPort}`;
    expect(component(s, 'codec-server')).toMatchObject({ address: codecUrl, health: 'up' });
    expect(readState(stack.home).processes.temporal!.argv.join(' ')).toContain(`--ui-codec-endpoint ${codecUrl}`);
    // The UI tells the browser where its codec server is.
    const settings = (await (await fetch(`${s.temporalUi}/api/v1/settings`)).json()) as {
      Codec?: { Endpoint?: string };
    };
    expect(settings.Codec?.Endpoint).toBe(codecUrl);

    // A CLI command (no key in its environment) and the stack's workers share the key.
    const plan = await runCli(['plan', '--service', 'ledger', '--to', 'us-east-1', '--json'], stack.env);
    expect(plan.code, show(plan)).toBe(0);
    expect((JSON.parse(plan.stdout) as { dryRun: boolean }).dryRun).toBe(true);
    const connection = await Connection.connect({ address: `127.0.0.1:${stack.temporalPort}` });
    try {
      const h = await rawHistory(connection, 'default', 'regionshift-ledger');
      const sealed = h.payloads.filter((p) => Buffer.from(p.metadata?.encoding ?? []).toString() === ENCODING);
      expect(sealed.length).toBeGreaterThan(2);
      expect(new Set(sealed.map((p) => Buffer.from(p.metadata![KEY_ID_METADATA]!).toString()))).toEqual(
        new Set([keyId]),
      );
      expect(h.bytes.includes('"requestedBy"')).toBe(false);
      // The stack's codec server holds the same key: it opens what the CLI and the workers sealed.
      const body = {
        payloads: sealed.map((p) => ({
          metadata: Object.fromEntries(
            Object.entries(p.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
          ),
          data: Buffer.from(p.data!).toString('base64'),
        })),
      };
      const res = await fetch(`${codecUrl}/decode`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default' },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(200);
      const opened = ((await res.json()) as { payloads: { data: string }[] }).payloads
        .map((p) => Buffer.from(p.data, 'base64').toString())
        .join('\n');
      expect(opened).toContain('"requestedBy"');
    } finally {
      await connection.close();
    }
  });

  it('replicates a write on the primary to the standby by streaming replication', async () => {
    const primary = new PgClient({
      host: '127.0.0.1',
      port: stack.pg['us-west-2']!.port,
      user: 'postgres',
      database: 'postgres',
    });
    const standby = new PgClient({
      host: '127.0.0.1',
      port: stack.pg['us-east-1']!.port,
      user: 'postgres',
      database: 'postgres',
    });
    await primary.connect();
    await standby.connect();
    try {
      const marker = `written-${Date.now()}`;
      await primary.query('create table if not exists stack_test (marker text primary key)');
      await primary.query('insert into stack_test values ($1)', [marker]);
      const seen = await waitFor('the write visible on the standby', async () => {
        const r = await standby
          .query('select marker from stack_test where marker = $1', [marker])
          .catch(() => undefined);
        return r && r.rowCount === 1 ? r.rows[0] : undefined;
      });
      expect(seen).toEqual({ marker });
      const recovery = await standby.query<{ r: boolean }>('select pg_is_in_recovery() as r');
      expect(recovery.rows[0]?.r).toBe(true);
      const receiver = await standby.query<{ status: string }>('select status from pg_stat_wal_receiver');
      expect(receiver.rows[0]?.status).toBe('streaming');
      await expect(standby.query("insert into stack_test values ('on-standby')")).rejects.toThrow(/read-only/);
    } finally {
      await primary.end();
      await standby.end();
    }
  });

  it('answers Route 53 calls through moto over HTTP', async () => {
    const route53 = new Route53Client({
      endpoint: `http://127.0.0.1:${stack.motoPort}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    const name = `stack-test-${Date.now()}.example.`;
    const created = await route53.send(new CreateHostedZoneCommand({ Name: name, CallerReference: name }));
    expect(created.HostedZone?.Id).toBeTruthy();
    const listed = await route53.send(new ListHostedZonesCommand({}));
    expect(listed.HostedZones?.map((z) => z.Name)).toContain(name);
  });

  it('a second up starts nothing and keeps every pid', async () => {
    const before = await status();
    const again = await runCli(['stack', 'up'], stack.env);
    expect(again.code, show(again)).toBe(0);
    expect(again.stdout).toContain('all components already running; nothing started');
    expect(again.stdout).not.toMatch(/^(starting|initialising) /m);
    const after = await status();
    expect(after.components.map((c) => [c.name, c.pid])).toEqual(before.components.map((c) => [c.name, c.pid]));
    expect(again.stdout).not.toContain("made the stack's payload encryption key");
  });

  it('after the writer moved, a restart starts the application writing to the new writer; status says when it writes elsewhere', async () => {
    const appUrl = `http://127.0.0.1:${stack.appPort}`;
    const ledger = loadConfig(stack.configFile).services[0]!;
    await ensureLedger(nodeOf(ledger, 'us-west-2'), postgresDatabase(ledger).regions['us-west-2']!.appUser);
    const moved = await runCli(['failover', '--service', 'ledger', '--to', 'us-east-1', '--json'], stack.env);
    expect(moved.code, show(moved)).toBe(0);
    const down = await runCli(['stack', 'down'], stack.env);
    expect(down.code, show(down)).toBe(0);
    const up = await runCli(['stack', 'up'], stack.env);
    expect(up.code, show(up)).toBe(0);

    const s = await status();
    expect(component(s, 'postgres:ledger:us-east-1').role).toBe('primary');
    expect(component(s, 'app:ledger')).toMatchObject({ health: 'up', detail: 'writing to us-east-1' });
    // Its writes land: the count for the writer grows and nothing is refused.
    const appStatus = async () =>
      (await (await fetch(`${appUrl}/status`)).json()) as { writes: Record<string, number>; errors: object };
    await waitFor('a write in us-east-1', async () => ((await appStatus()).writes['us-east-1'] ?? 0) > 0, 10_000);
    expect((await appStatus()).errors).toEqual({});

    // Told the wrong region by hand, the application's line in status says so and how to fix it.
    const told = await fetch(`${appUrl}/primary`, {
      method: 'POST',
      headers: { 'idempotency-key': `stack-test-${Date.now()}` },
      body: JSON.stringify({ primary: 'us-west-2' }),
    });
    expect(told.status).toBe(200);
    expect(component(await status(), 'app:ledger').detail).toMatch(
      new RegExp(
        `^warning: writing to us-west-2, but the writer is us-east-1: curl -sS -X POST ${appUrl}/primary .*"primary":"us-east-1"`,
      ),
    );
  });

  it('down stops everything it started and nothing is left running', async () => {
    const before = await status();
    const pids = before.components.map((c) => c.pid).filter((p): p is number => p !== null);
    expect(pids.length).toBeGreaterThan(0);

    const down = await runCli(['stack', 'down'], stack.env);
    expect(down.code, show(down)).toBe(0);
    for (const pid of new Set(pids)) expect(alive(pid), `pid ${pid} still runs`).toBe(false);
    expect(postmasterAlive(stack.pg['us-west-2']!.dataDir)).toBe(false);
    expect(postmasterAlive(stack.pg['us-east-1']!.dataDir)).toBe(false);
    expect(processesOf(stack)).toEqual([]);

    const s = await status();
    for (const c of s.components) expect(['down', 'skipped'], c.name).toContain(c.health);
  });

  it('refuses to start on a taken port, naming the port and the component, and starts nothing', async () => {
    const squatter: Server = createServer();
    await new Promise<void>((ok) => squatter.listen({ host: '127.0.0.1', port: stack.temporalPort }, ok));
    try {
      const r = await runCli(['stack', 'up'], stack.env);
      expect(r.code, show(r)).toBe(2);
      expect(r.stderr).toContain(`port ${stack.temporalPort} (temporal) is in use by another process`);
      expect(r.stderr).toContain('stack.temporalPort');
      expect(processesOf(stack)).toEqual([]);
      expect(postmasterAlive(stack.pg['us-west-2']!.dataDir)).toBe(false);
    } finally {
      await new Promise((ok) => squatter.close(ok));
    }
  });
});

describe('the ports a temporary stack is given', () => {
  it('lie below the ephemeral range (a restarted component finds its port), one test file together, distinct and free; a run is consecutive', async () => {
    const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    const ports = await freePorts(60);
    expect(new Set(ports).size).toBe(60);
    for (const p of ports) expect(p >= 10_000 && p < ephemeralLow, `port ${p}`).toBe(true);
    // This file's slice of the range (VITEST_POOL_ID): files running at once never choose the same port.
    expect(process.env.VITEST_POOL_ID).toBeDefined();
    expect(Math.max(...ports) - Math.min(...ports)).toBeLessThan((ephemeralLow - 10_000) / 8);
    const base = await freePortRun(4, ports);
    for (let i = 0; i < 4; i++) {
      expect(ports).not.toContain(base + i);
      expect(await isPortFree('127.0.0.1', base + i)).toBe(true);
    }
  });
});
