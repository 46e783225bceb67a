// Payload encryption on a real Temporal dev server: what a client without keys reads from the
// server (the raw history) holds no customer data; clients with the wrong key, or without the key
// a payload names, fail with an error that names the key; bad key settings are refused naming the
// variable and the entry; and the codec server speaks the UI's protocol (CORS, bearer token).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AesGcmCodec, CodecError, ENCODING, KEY_ID_METADATA, NoKeysCodec } from '../src/lib/codec/aes-gcm';
import { codecKeysFile, codecKeysFromEnv, dataConverterFromEnv, ensureStackCodecKeys } from '../src/lib/codec/env';
import { CodecConfigError, parseCodecKeys } from '../src/lib/codec/keys';
import { startCodecServer, type CodecServer } from '../src/lib/codec/server';
import { rawHistory } from './support/raw-history';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { runCli } from './support/stack-env';

const key = (): string => randomBytes(32).toString('base64');
const K1 = key();
const K2 = key();
// Set before the rig starts: its client and workers take their codec from the environment, as
// the CLI and the region workers do.
process.env.REGIONSHIFT_CODEC_KEYS = `k1:${K1},k2:${K2}`;
process.env.REGIONSHIFT_CODEC_KEY_ID = 'k1';

const ECHO = join(__dirname, 'support', 'echo-workflow.ts');
const TASK_QUEUE = 'codec-echo';
// What a reconciliation case holds: an account, an amount, both versions of a row.
const CUSTOMER = {
  account: 'acct-eu-7c41d9',
  amount: '48213.77',
  old: { balance: '48213.77', iban: 'DE44500105175407324931' },
  new: null,
};
const SECRETS = [CUSTOMER.account, CUSTOMER.amount, CUSTOMER.old.iban];

let te: TemporalEnv;
let plainConnection: Connection;
let plain: Client;

const clientWith = (keys: string, id: string): Client =>
  new Client({
    connection: plainConnection,
    namespace: 'default',
    dataConverter: dataConverterFromEnv({ REGIONSHIFT_CODEC_KEYS: keys, REGIONSHIFT_CODEC_KEY_ID: id }),
  });

async function echo(client: Client, workflowId: string): Promise<string> {
  const arg = JSON.stringify(CUSTOMER);
  await client.workflow.start('echo', { taskQueue: TASK_QUEUE, workflowId, args: [arg] });
  return workflowId;
}

/** The history exactly as the server stores and serves it. */
const raw = (workflowId: string) => rawHistory(plainConnection, 'default', workflowId);

const text = (b: Uint8Array | null | undefined): string => Buffer.from(b ?? []).toString('utf8');

beforeAll(async () => {
  te = await createTemporalEnv((address) =>
    paperConfig(address, [{ name: 'ledger', regions: ['eu-west-1', 'eu-central-1'] }]),
  );
  await te.startWorker({ taskQueue: TASK_QUEUE, workflowsPath: ECHO });
  plainConnection = await Connection.connect({ address: te.address });
  // No codec at all: what anyone with access to the Temporal server (or its database) sees.
  plain = new Client({ connection: plainConnection, namespace: 'default' });
});

afterAll(async () => {
  await plainConnection?.close();
  await te?.teardown();
});

describe('payloads in history', () => {
  it('hold no customer data in plain text; the client with the key reads the result', async () => {
    const id = await echo(te.client, `codec-raw-${Date.now()}`);
    const result = await te.client.workflow.getHandle(id).result();
    expect(JSON.parse(result)).toEqual(CUSTOMER);

    const { bytes, payloads } = await raw(id);
    for (const s of SECRETS) expect(bytes.includes(s), `"${s}" in the raw history`).toBe(false);
    // Input and result, both sealed; only the encoding and the key id are readable.
    expect(payloads.length).toBeGreaterThanOrEqual(2);
    for (const p of payloads) {
      expect(Object.keys(p.metadata ?? {}).sort()).toEqual(['encoding', KEY_ID_METADATA]);
      expect(text(p.metadata!.encoding)).toBe(ENCODING);
      expect(text(p.metadata![KEY_ID_METADATA])).toBe('k1');
    }
    // The same payloads decrypt to the customer data: the scan above looked where it is.
    const decoded = await new AesGcmCodec(parseCodecKeys(`k1:${K1}`, 'k1')).decode(payloads);
    expect(decoded.some((p) => text(p.data).includes(CUSTOMER.old.iban))).toBe(true);
  });

  it('a client without a codec would have put it there: the scan finds plain payloads', async () => {
    const id = `codec-plain-${Date.now()}`;
    await plain.workflow.start('echo', { taskQueue: TASK_QUEUE, workflowId: id, args: [JSON.stringify(CUSTOMER)] });
    await te.client.workflow.getHandle(id).result();
    const { bytes } = await raw(id);
    expect(bytes.includes(CUSTOMER.old.iban)).toBe(true);
  });

  it('each payload has its own IV: the same input twice is two different ciphertexts', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${K1}`, 'k1'));
    const p: Payload = {
      metadata: { encoding: Buffer.from('json/plain') },
      data: Buffer.from(JSON.stringify(CUSTOMER)),
    };
    const [a, b] = await codec.encode([p, p]);
    expect(Buffer.from(a!.data!).equals(Buffer.from(b!.data!))).toBe(false);
    expect(Buffer.from(a!.data!).subarray(0, 12).equals(Buffer.from(b!.data!).subarray(0, 12))).toBe(false);
  });

  it('rotation: a client that encrypts with k2 and keeps k1 reads both; history names the key of each payload', async () => {
    const rotated = clientWith(`k2:${K2},k1:${K1}`, 'k2');
    const id = await echo(rotated, `codec-rotated-${Date.now()}`);
    expect(JSON.parse(await rotated.workflow.getHandle(id).result())).toEqual(CUSTOMER);
    const { payloads } = await raw(id);
    // The input was written by the rotated client (k2), the result by the worker (still on k1).
    expect(new Set(payloads.map((p) => text(p.metadata![KEY_ID_METADATA])))).toEqual(new Set(['k1', 'k2']));
  });

  it("a payload whose key is not in the process's keys: an error naming the key id", async () => {
    const id = await echo(te.client, `codec-unknown-${Date.now()}`);
    await te.client.workflow.getHandle(id).result();
    const onlyK2 = clientWith(`k2:${K2}`, 'k2');
    await expect(onlyK2.workflow.getHandle(id).result()).rejects.toThrow(
      'cannot decrypt a payload encrypted with key "k1": REGIONSHIFT_CODEC_KEYS has no key with that id (its ids: k2)',
    );
  });

  it('the wrong key under the right id: GCM authentication fails, never garbage', async () => {
    const id = await echo(te.client, `codec-wrong-${Date.now()}`);
    await te.client.workflow.getHandle(id).result();
    const impostor = clientWith(`k1:${key()}`, 'k1');
    const err = await impostor.workflow
      .getHandle(id)
      .result()
      .catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(CodecError);
    expect((err as Error).message).toContain('cannot decrypt a payload encrypted with key "k1": authentication failed');
  });

  it('a key id altered in the metadata fails authentication (the id is bound into the tag)', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${K1},k2:${K1}`, 'k1'));
    const [sealed] = await codec.encode([
      { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('"x"') },
    ]);
    const relabelled = { ...sealed!, metadata: { ...sealed!.metadata, [KEY_ID_METADATA]: Buffer.from('k2') } };
    await expect(codec.decode([relabelled])).rejects.toThrow('encrypted with key "k2": authentication failed');
  });

  it('a process without keys reads plain payloads and refuses encrypted ones clearly', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${K1}`, 'k1'));
    const plainPayload: Payload = { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('"x"') };
    const [sealed] = await codec.encode([plainPayload]);
    expect(await codec.decode([plainPayload])).toEqual([plainPayload]);
    await expect(new NoKeysCodec().decode([sealed!])).rejects.toThrow(
      'cannot decrypt a payload encrypted with key "k1": this process has no keys (REGIONSHIFT_CODEC_KEYS is not set)',
    );
  });
});

describe('key settings', () => {
  const refused = (keys: string, id: string | undefined): string => {
    try {
      parseCodecKeys(keys, id);
    } catch (err) {
      expect(err).toBeInstanceOf(CodecConfigError);
      return (err as Error).message;
    }
    throw new Error('accepted');
  };

  it('refuses a key that is not 32 bytes, naming the variable and the entry', () => {
    const short = randomBytes(16).toString('base64');
    expect(refused(`k1:${K1},k2:${short}`, 'k1')).toBe(
      'REGIONSHIFT_CODEC_KEYS (the environment) entry 2 (key "k2") is 16 bytes; AES-256-GCM needs 32 (make one with: openssl rand -base64 32)',
    );
  });

  it('refuses a duplicate id, a missing or unknown current id, and malformed entries', () => {
    expect(refused(`k1:${K1},k2:${K2},k1:${K2}`, 'k1')).toBe(
      'REGIONSHIFT_CODEC_KEYS (the environment) names key "k1" twice (entries 1 and 3); each id must name one key',
    );
    expect(refused(`k1:${K1}`, undefined)).toBe(
      'REGIONSHIFT_CODEC_KEY_ID (the environment) is not set; set it to the id of the key to encrypt with (one of: k1)',
    );
    expect(refused(`k1:${K1},k2:${K2}`, 'k3')).toBe(
      'REGIONSHIFT_CODEC_KEY_ID=k3 (the environment) names no key in REGIONSHIFT_CODEC_KEYS (its ids: k1, k2)',
    );
    expect(refused(`k1:${K1},`, 'k1')).toBe(
      'REGIONSHIFT_CODEC_KEYS (the environment) entry 2 is empty; the format is id:base64key,id:base64key',
    );
    expect(refused(K1, 'k1')).toBe(
      'REGIONSHIFT_CODEC_KEYS (the environment) entry 1 has no "id:" prefix; the format is id:base64key,id:base64key',
    );
    expect(refused(`k1:not base64!`, 'k1')).toBe(
      'REGIONSHIFT_CODEC_KEYS (the environment) entry 1 (key "k1"): the key is not standard base64',
    );
    expect(refused(`k 1:${K1}`, 'k 1')).toContain('entry 1: key id "k 1" may use only letters, digits');
    // The key material never appears in a message.
    expect(refused(`k1:${K1},k1:${K2}`, 'k1')).not.toContain(K1.slice(0, 12));
  });

  it('refuses a current id without keys; without either, warns once and runs unencrypted', () => {
    const home = mkdtempSync(join(tmpdir(), 'regionshift-codec-'));
    try {
      expect(() => codecKeysFromEnv({ REGIONSHIFT_CODEC_KEY_ID: 'k1', REGIONSHIFT_HOME: home })).toThrow(
        'REGIONSHIFT_CODEC_KEY_ID=k1 is set but REGIONSHIFT_CODEC_KEYS is not; set both, or neither',
      );
      const lines: string[] = [];
      const dc = dataConverterFromEnv({ REGIONSHIFT_HOME: home }, { warn: (l) => lines.push(l) });
      dataConverterFromEnv({ REGIONSHIFT_HOME: home }, { warn: (l) => lines.push(l) });
      expect(lines).toEqual([
        'regionshift: warning: REGIONSHIFT_CODEC_KEYS is not set; payloads this process sends to Temporal are stored in plain text (see docs/codec.md)',
      ]);
      expect(dc.payloadCodecs?.[0]).toBeInstanceOf(NoKeysCodec);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it("the local stack's key file: made once (0600), kept, and found when the variables are absent", () => {
    const home = mkdtempSync(join(tmpdir(), 'regionshift-codec-'));
    try {
      const first = ensureStackCodecKeys(home);
      const again = ensureStackCodecKeys(home);
      expect(first.created).toBe(true);
      expect(again).toEqual({ ...first, created: false });
      expect(statSync(codecKeysFile(home)).mode & 0o777).toBe(0o600);
      const found = codecKeysFromEnv({ REGIONSHIFT_HOME: home });
      expect(found?.source).toBe(codecKeysFile(home));
      expect(found?.keys.currentId).toBe(first.env.REGIONSHIFT_CODEC_KEY_ID);
      // An environment that sets the keys wins over the file.
      expect(
        codecKeysFromEnv({ REGIONSHIFT_HOME: home, REGIONSHIFT_CODEC_KEYS: `k2:${K2}`, REGIONSHIFT_CODEC_KEY_ID: 'k2' })
          ?.keys.currentId,
      ).toBe('k2');
      expect(readFileSync(codecKeysFile(home), 'utf8')).toMatch(
        /^REGIONSHIFT_CODEC_KEYS=local-\d{8}:[A-Za-z0-9+/]{43}=$/m,
      );
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('the CLI refuses bad keys as bad input (exit 2) before it contacts anything', async () => {
    const home = mkdtempSync(join(tmpdir(), 'regionshift-codec-'));
    try {
      const env = {
        ...process.env,
        REGIONSHIFT_HOME: home,
        REGIONSHIFT_CODEC_KEYS: `k1:${randomBytes(31).toString('base64')}`,
        REGIONSHIFT_CODEC_KEY_ID: 'k1',
        TEMPORAL_ADDRESS: te.address,
      };
      const r = await runCli(['status', 'ledger'], env, 60_000);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('bad input: REGIONSHIFT_CODEC_KEYS (the environment) entry 1 (key "k1") is 31 bytes');
      const server = await runCli(
        ['codec-server', '--port', '0'],
        { ...process.env, REGIONSHIFT_HOME: home, REGIONSHIFT_CODEC_KEYS: '', REGIONSHIFT_CODEC_KEY_ID: '' },
        60_000,
      );
      expect(server.code).toBe(2);
      expect(server.stderr).toContain(
        'bad input: the codec server needs keys: set REGIONSHIFT_CODEC_KEYS and REGIONSHIFT_CODEC_KEY_ID',
      );
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('codec server', () => {
  const UI = 'http://127.0.0.1:8233';
  const TOKEN = 'tok-' + randomBytes(8).toString('hex');
  let server: CodecServer;
  let open: CodecServer;

  beforeAll(async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${K1},k2:${K2}`, 'k1'));
    [server, open] = await Promise.all([
      startCodecServer({ codec, origins: [UI], token: TOKEN, namespaces: ['default'] }),
      startCodecServer({ codec, origins: [UI] }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([server?.close(), open?.close()]);
  });

  const post = (base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Origin: UI, ...headers },
      body: JSON.stringify(body),
    });
  const auth = { Authorization: `Bearer ${TOKEN}` };

  it("round-trips payloads over HTTP in the protocol's JSON (base64 metadata and data)", async () => {
    const original = {
      metadata: { encoding: Buffer.from('json/plain').toString('base64') },
      data: Buffer.from(JSON.stringify(CUSTOMER)).toString('base64'),
    };
    const enc = await post(server.url, '/encode', { payloads: [original] }, auth);
    expect(enc.status).toBe(200);
    expect(enc.headers.get('access-control-allow-origin')).toBe(UI);
    const encoded = (await enc.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(encoded.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe(ENCODING);
    expect(Buffer.from(encoded.payloads[0]!.data, 'base64').includes(CUSTOMER.account)).toBe(false);
    const dec = await post(server.url, '/decode', encoded, auth);
    expect(dec.status).toBe(200);
    expect(await dec.json()).toEqual({ payloads: [original] });
  });

  it('decodes a payload exactly as a client without keys got it from the Temporal server', async () => {
    const id = await echo(te.client, `codec-server-${Date.now()}`);
    await te.client.workflow.getHandle(id).result();
    const { payloads } = await raw(id);
    const asJson = payloads.map((p) => ({
      metadata: Object.fromEntries(
        Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
      ),
      data: Buffer.from(p.data!).toString('base64'),
    }));
    // The CLI's --codec-endpoint form: the namespace in the path.
    const res = await post(open.url, '/default/decode', { payloads: asJson }, { 'X-Namespace': '' });
    expect(res.status).toBe(200);
    const out = (await res.json()) as { payloads: { data: string }[] };
    expect(out.payloads.map((p) => Buffer.from(p.data, 'base64').toString()).join('\n')).toContain(CUSTOMER.old.iban);
  });

  it("answers the UI's CORS preflight for its origin, without asking for the token", async () => {
    const res = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: {
        Origin: UI,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type,x-namespace,authorization',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase().split(/,\s*/)).toEqual(
      expect.arrayContaining(['content-type', 'x-namespace', 'authorization']),
    );
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const other = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(other.status).toBe(403);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('refuses without the bearer token (401), with a wrong one (403), another namespace (403)', async () => {
    const none = await post(server.url, '/decode', { payloads: [] });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    expect(await none.json()).toEqual({ error: 'missing Authorization: Bearer <token>' });
    const wrong = await post(server.url, '/decode', { payloads: [] }, { Authorization: 'Bearer nope' });
    expect(wrong.status).toBe(403);
    const ns = await post(server.url, '/decode', { payloads: [] }, { ...auth, 'X-Namespace': 'payments' });
    expect(ns.status).toBe(403);
    expect(((await ns.json()) as { error: string }).error).toBe(
      'namespace payments is not served here (served: default)',
    );
  });

  it('says what is wrong with a bad request', async () => {
    const notJson = await fetch(`${open.url}/decode`, { method: 'POST', body: 'payloads please' });
    expect([notJson.status, await notJson.json()]).toEqual([
      400,
      { error: 'the body is not JSON; send {"payloads":[…]}' },
    ]);
    const noList = await post(open.url, '/decode', { payload: [] });
    expect([noList.status, await noList.json()]).toEqual([400, { error: 'the body has no "payloads" array' }]);
    const get = await fetch(`${open.url}/decode`);
    expect(get.status).toBe(405);
    const elsewhere = await post(open.url, '/decrypt', { payloads: [] });
    expect(elsewhere.status).toBe(404);
    const tampered = {
      payloads: [
        {
          metadata: {
            encoding: Buffer.from(ENCODING).toString('base64'),
            [KEY_ID_METADATA]: Buffer.from('k9').toString('base64'),
          },
          data: randomBytes(40).toString('base64'),
        },
      ],
    };
    const bad = await post(open.url, '/decode', tampered);
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { error: string }).error).toContain(
      'encrypted with key "k9": REGIONSHIFT_CODEC_KEYS has no key with that id',
    );
  });
});
