// Loading YAML with validation errors a person can act on: file, line, and the path of the
// field in words ("services[0] (ledger).database.regions.us-east-1.port").
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { approvalProblems, Config } from './schema';
import { TLS_FILE_KEYS, tlsFileProblems } from './temporal-credentials';

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file} is not valid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

type PathPart = string | number;

/** Names list items by their `id` or `name` field so a reader can find them. */
function describePath(root: unknown, path: PathPart[]): string {
  let out = '';
  let node: unknown = root;
  for (const part of path) {
    if (typeof part === 'number') {
      out += `[${part}]`;
      node = Array.isArray(node) ? node[part] : undefined;
      const label =
        node && typeof node === 'object'
          ? ((node as Record<string, unknown>).id ?? (node as Record<string, unknown>).name)
          : undefined;
      if (typeof label === 'string') out += ` (${label})`;
    } else {
      out += out ? `.${part}` : part;
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    }
  }
  return out || '(top level)';
}

export interface Loaded<T> {
  value: T;
  /** sha256 of the file's bytes: recorded by runs so an edit is visible in the audit record. */
  hash: string;
  file: string;
}

/** Parse and validate YAML text against a schema; every problem is reported, not just the first. */
export function parseYaml<S extends z.ZodType>(file: string, text: string, schema: S): Loaded<z.infer<S>> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `${file}${pos ? `:${pos.line}:${pos.col}` : ''}: YAML syntax: ${e.message.split('\n')[0]}`;
      }),
    );
  }
  const raw: unknown = doc.toJS();
  const result = schema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const path = issue.path.filter((p): p is PathPart => typeof p !== 'symbol');
      // Point at the deepest node that exists in the file (a missing field points at its parent).
      let line: number | undefined;
      for (let n = path.length; n >= 0 && line === undefined; n--) {
        const node = path.length === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
        const range = (node as { range?: [number, number, number] } | undefined)?.range;
        if (range) line = lineCounter.linePos(range[0]).line;
      }
      return `${file}${line ? `:${line}` : ''}: ${describePath(raw, path)}: ${issue.message}`;
    });
    throw new ConfigError(file, problems);
  }
  return { value: result.data, hash: createHash('sha256').update(text).digest('hex'), file };
}

export function loadYamlFile<S extends z.ZodType>(file: string, schema: S): Loaded<z.infer<S>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`${file}: cannot read: ${(err as Error).message}`]);
  }
  return parseYaml(file, text, schema);
}

/** The service config: REGIONSHIFT_CONFIG, else ./regionshift.yaml. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.REGIONSHIFT_CONFIG ?? 'regionshift.yaml';
}

/** Loads the service config; relative data directories are taken from the config file's folder. */
export function loadConfig(file = configPath()): Config {
  const config = loadYamlFile(file, Config).value;
  const problems = approvalProblems(config);
  if (problems.length > 0)
    throw new ConfigError(
      file,
      problems.map((p) => `${file}: ${p}`),
    );
  const base = dirname(resolve(file));
  const tls = config.temporal.tls;
  if (typeof tls === 'object') {
    for (const key of TLS_FILE_KEYS) if (tls[key]) tls[key] = resolve(base, tls[key]);
    // Checked here too, so `regionshift validate` catches a wrong path, not the first connection.
    const unreadable = tlsFileProblems(config);
    if (unreadable.length)
      throw new ConfigError(
        file,
        unreadable.map((p) => `${file}: ${p}`),
      );
  }
  for (const plugin of config.plugins) if (plugin.module.startsWith('.')) plugin.module = resolve(base, plugin.module);
  for (const service of config.services) {
    const own = (service.runbooks ?? {}) as Record<string, string>;
    for (const [kind, path] of Object.entries(own)) own[kind] = resolve(base, path);
    for (const a of service.policy.approvers) if (a.sshKeysFile) a.sshKeysFile = resolve(base, a.sshKeysFile);
    if (service.database.provider !== 'postgres-streaming') continue;
    for (const node of Object.values(service.database.regions)) node.dataDir = resolve(base, node.dataDir);
  }
  return config;
}
