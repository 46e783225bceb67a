import { parseArgs } from 'node:util';
import { AesGcmCodec } from '../lib/codec/aes-gcm';
import { codecKeysFromEnv } from '../lib/codec/env';
import { KEYS_VAR } from '../lib/codec/keys';
import { startCodecServer } from '../lib/codec/server';
import { InputError } from '../lib/runs/client';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';

export const CODEC_TOKEN_VAR = 'REGIONSHIFT_CODEC_SERVER_TOKEN';
import { CODEC_READY_LINE } from '../stack/codec';

const USAGE = 'usage: regionshift codec-server [--host H] [--port N] [--origin URL]... [--config FILE]';

/** The UI is reachable as localhost or 127.0.0.1, and the browser sends whichever was typed. */
function originsOf(uiUrl: string): string[] {
  const u = new URL(uiUrl);
  const out = new Set([u.origin]);
  if (u.hostname === '127.0.0.1' || u.hostname === 'localhost') {
    for (const h of ['127.0.0.1', 'localhost']) out.add(`${u.protocol}//${h}${u.port ? `:${u.port}` : ''}`);
  }
  return [...out];
}

/** `regionshift codec-server`: decrypts payloads for the Temporal UI and CLI with this process's keys. */
export function codecServerCommand(argv: string[]): Promise<number> {
  return guard(false, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        origin: { type: 'string', multiple: true },
        config: { type: 'string' },
      },
      strict: true,
    });
    const cfg = loadConfig(values.config);
    const port = values.port === undefined ? cfg.stack.codecServerPort : Number(values.port);
    if (!(Number.isInteger(port) && port >= 0 && port < 65536))
      throw new InputError(`--port ${values.port} is not a port number\n${USAGE}`);
    const found = codecKeysFromEnv();
    if (!found)
      throw new InputError(`the codec server needs keys: set ${KEYS_VAR} and REGIONSHIFT_CODEC_KEY_ID (docs/codec.md)`);
    const origins = values.origin?.length ? values.origin : originsOf(cfg.temporal.uiUrl);
    const token = process.env[CODEC_TOKEN_VAR] || undefined;
    const server = await startCodecServer({
      codec: new AesGcmCodec(found.keys),
      host: values.host ?? '127.0.0.1',
      port,
      origins,
      token,
      namespaces: [cfg.temporal.namespace],
      log: (line) => console.error(line),
    });
    console.log(
      `${CODEC_READY_LINE}: ${server.url} (POST /encode, /decode); origins ${origins.join(', ')}; keys from ${found.source}, encrypting with "${found.keys.currentId}"; ${token ? 'bearer token required' : `no token (set ${CODEC_TOKEN_VAR} to require one)`}`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await server.close();
    return EXIT.ok;
  });
}
