// The Temporal CLI's dev server: finding (or building once) the binary, its command line, and
// the checks that say it serves the namespace with the project's search attributes.
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TOOLS_DIR } from '../lib/paths';
import { PrerequisiteError } from '../lib/postgres/node';
import { runStreaming, which } from './run';
import { tcpOpen } from '../lib/net';
import { SEARCH_ATTRIBUTE_NAMES } from '../../workflows/search-attributes';

export const TEMPORAL_CLI_VERSION = 'v1.5.1';
const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal';

/** Custom search attributes runs are indexed by (all Keyword); defined next to the workflow that sets them. */
export const SEARCH_ATTRIBUTES = SEARCH_ATTRIBUTE_NAMES;

/** proto enum temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD */
const INDEXED_VALUE_TYPE_KEYWORD = 2;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Temporal CLI already on this machine: TEMPORAL_CLI_PATH (an explicit choice wins), then
 * `temporal` on PATH, then the copy this project built into <tools>/bin.
 */
export function findTemporalCli(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env.TEMPORAL_CLI_PATH;
  if (explicit) {
    if (!executable(explicit)) {
      throw new PrerequisiteError(`TEMPORAL_CLI_PATH=${explicit} is not an executable file; fix it or unset it`);
    }
    return explicit;
  }
  const onPath = which('temporal', env);
  if (onPath) return onPath;
  const local = join(TOOLS_DIR, 'bin', 'temporal');
  return executable(local) ? local : undefined;
}

/** The Temporal CLI binary, built once with `go install` into <tools>/bin when not found. */
export async function ensureTemporalCli(opts: { onProgress?(line: string): void } = {}): Promise<string> {
  const found = findTemporalCli();
  if (found) return found;
  const go = which('go') ?? (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
  if (!go) {
    throw new PrerequisiteError(
      'Temporal CLI not found (TEMPORAL_CLI_PATH, `temporal` on PATH, .regionshift/bin/temporal) and Go is not installed to build it: ' +
        'install the Temporal CLI (https://docs.temporal.io/cli) and set TEMPORAL_CLI_PATH, or install Go',
    );
  }
  const binDir = join(TOOLS_DIR, 'bin');
  mkdirSync(binDir, { recursive: true });
  opts.onProgress?.(
    `building the Temporal CLI ${TEMPORAL_CLI_VERSION} into ${binDir} (takes a few minutes the first time)…`,
  );
  try {
    await runStreaming(go, ['install', '-v', `${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION}`], {
      env: { ...process.env, GOBIN: binDir },
      idleNoticeMs: 15_000,
      onLine: (line) => opts.onProgress?.(`  go: ${line}`),
    });
  } catch (err) {
    throw new PrerequisiteError(
      `building the Temporal CLI failed: ${(err as Error).message}; install it yourself and set TEMPORAL_CLI_PATH`,
    );
  }
  const built = join(binDir, 'temporal');
  if (!executable(built))
    throw new PrerequisiteError(`go install finished but ${built} is missing; set TEMPORAL_CLI_PATH`);
  opts.onProgress?.(`built ${built}`);
  return built;
}

export interface TemporalServerOptions {
  host: string;
  port: number;
  uiPort: number;
  /** SQLite file, so workflow history survives a restart. */
  dbFile: string;
  namespace: string;
  /** The codec server the Web UI decrypts payloads through. */
  codecEndpoint?: string;
}

export function temporalArgv(bin: string, o: TemporalServerOptions): string[] {
  const argv = [
    bin,
    'server',
    'start-dev',
    '--ip',
    o.host,
    '--port',
    String(o.port),
    '--ui-port',
    String(o.uiPort),
    '--db-filename',
    o.dbFile,
    // WAL with synchronous=NORMAL keeps history across a crash of the server process (what the
    // local stack promises) with far fewer fsyncs per workflow task than SQLite's default.
    '--sqlite-pragma',
    'journal_mode=wal',
    '--sqlite-pragma',
    'synchronous=normal',
    // One partition per task queue: with the server's default four, a task that lands on a
    // partition whose poller is elsewhere is forwarded to the root first, a hop on every activity
    // and workflow task of a run. Partitions spread load over matching hosts; this one has one host.
    '--dynamic-config-value',
    'matching.numTaskqueueReadPartitions=1',
    '--dynamic-config-value',
    'matching.numTaskqueueWritePartitions=1',
  ];
  if (o.namespace !== 'default') argv.push('--namespace', o.namespace);
  if (o.codecEndpoint) argv.push('--ui-codec-endpoint', o.codecEndpoint);
  for (const name of SEARCH_ATTRIBUTES) argv.push('--search-attribute', `${name}=Keyword`);
  return argv;
}

type Connection = import('@temporalio/client').Connection;

async function withConnection<T>(address: string, fn: (c: Connection) => Promise<T>): Promise<T> {
  const { Connection } = await import('@temporalio/client');
  const connection = await Connection.connect({ address, connectTimeout: '3s' });
  try {
    return await fn(connection);
  } finally {
    await connection.close();
  }
}

/**
 * Asks the frontend for the namespace's custom search attributes: an answer means the server
 * serves the namespace. Returns the project's attributes that are not registered.
 */
export async function missingSearchAttributes(host: string, port: number, namespace: string): Promise<string[]> {
  // A quick refusal beats waiting for gRPC's connect timeout when nothing listens.
  if (!(await tcpOpen(host, port))) throw new Error(`nothing listens on ${host}:${port}`);
  return withConnection(`${host}:${port}`, async (c) => {
    const res = await c.operatorService.listSearchAttributes({ namespace });
    const have = new Set(Object.keys(res.customAttributes ?? {}));
    return SEARCH_ATTRIBUTES.filter((n) => !have.has(n));
  });
}

/**
 * Registers missing attributes. Needed because `--search-attribute` only takes effect when the
 * dev server creates its SQLite file: a file from an older version keeps its old set.
 */
export async function registerSearchAttributes(
  host: string,
  port: number,
  namespace: string,
  names: readonly string[],
): Promise<void> {
  if (names.length === 0) return;
  await withConnection(`${host}:${port}`, async (c) => {
    await c.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(names.map((n) => [n, INDEXED_VALUE_TYPE_KEYWORD])),
    });
  });
}
