// docker-compose.yml, Dockerfile and .dockerignore: the self-hosted stack is a valid Compose
// file, every service builds from files that exist here, the one-shot Temporal setup steps do
// what they say, and no secret is written into the file.
import { SEARCH_ATTRIBUTE_NAMES } from '../workflows/search-attributes';
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { createComposeValidator, loadComposeSchema, type ComposeValidator } from './support/compose-schema';
import { clusterConfigYaml } from '../src/stack/control-plane';

const repoRoot = path.resolve(__dirname, '..');
const composeFile = path.join(repoRoot, 'docker-compose.yml');

type Dict = Record<string, unknown>;
type Service = Dict & {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Dict | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  volumes?: Array<string | Dict>;
  ports?: unknown;
  profiles?: string[];
};
interface ComposeDocument {
  name?: string;
  services: Record<string, Service>;
  volumes?: Dict;
  [key: string]: unknown;
}

/** Parses compose YAML the way Compose does: YAML merge keys (`<<: *anchor`) resolved. */
function parseCompose(text: string): ComposeDocument {
  return parse(text, { merge: true }) as ComposeDocument;
}

const composeText = readFileSync(composeFile, 'utf8');
const compose = parseCompose(composeText);
const services = Object.entries(compose.services);

/** The regionshift subcommands a built service may run (the image's ENTRYPOINT is the CLI). */
const REGIONSHIFT_SUBCOMMANDS = ['worker', 'slack', 'intake', 'codec-server', 'control-plane'] as const;

/** The services built from this repo, and exactly what each runs. */
const EXPECTED_REGIONSHIFT_SERVICES: Record<string, string[]> = {
  'worker-us-west-2': ['worker', '--region', 'us-west-2'],
  'worker-us-east-1': ['worker', '--region', 'us-east-1'],
  'control-worker': ['worker', '--control-only'],
  'slack-bot': ['slack'],
  'alarm-intake': ['intake'],
  'codec-server': [
    'codec-server',
    '--host',
    '0.0.0.0',
    '--port',
    '8234',
    '--origin',
    'http://${TEMPORAL_PUBLISH_ADDRESS:-127.0.0.1}:8080',
  ],
  // Profile replicated: links the two clusters.
  'control-plane-init': ['control-plane', 'init'],
};

const SEARCH_ATTRIBUTES = SEARCH_ATTRIBUTE_NAMES;

let composePlugin: boolean | undefined;
/** Whether `docker compose` (the Compose v2 plugin) runs here; it needs no Docker engine. */
function hasComposePlugin(): boolean {
  composePlugin ??= spawnSync('docker', ['compose', 'version'], { encoding: 'utf8', timeout: 20_000 }).status === 0;
  return composePlugin;
}

function dockerComposeConfig(file: string): { status: number | null; output: string } {
  const run = spawnSync('docker', ['compose', '-f', file, 'config', '--quiet'], {
    cwd: path.dirname(file),
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: run.status, output: `${run.stdout ?? ''}${run.stderr ?? ''}` };
}

function withTempCompose<T>(document: unknown, use: (file: string) => T): T {
  // Written next to the real file so relative build contexts resolve the same way.
  const file = path.join(repoRoot, `.vitest-compose-${process.pid}.yml`);
  writeFileSync(file, JSON.stringify(document, null, 2));
  try {
    return use(file);
  } finally {
    rmSync(file, { force: true });
  }
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** A service's environment as name -> value (null = passed through from Compose's environment). */
function environmentOf(service: Service): Map<string, string | null> {
  const env = new Map<string, string | null>();
  const raw = service.environment;
  if (Array.isArray(raw)) {
    for (const entry of raw) {
      const eq = entry.indexOf('=');
      if (eq === -1) env.set(entry, null);
      else env.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
  } else if (raw) {
    for (const [name, value] of Object.entries(raw))
      env.set(name, value === null || value === undefined ? null : String(value));
  }
  return env;
}

function commandOf(service: Service): string[] | undefined {
  if (service.command === undefined) return undefined;
  return Array.isArray(service.command) ? service.command : service.command.split(/\s+/).filter(Boolean);
}

function buildOf(service: Service): { context: string; dockerfile: string } | undefined {
  if (service.build === undefined) return undefined;
  if (typeof service.build === 'string') return { context: service.build, dockerfile: 'Dockerfile' };
  return { context: service.build.context ?? '.', dockerfile: service.build.dockerfile ?? 'Dockerfile' };
}

// ---- secrets -----------------------------------------------------------------------------------

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|PWD|KEY/i;
/** A whole value that is one Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}. */
const INTERPOLATION = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}$/;
/** Variables whose interpolation may carry a non-empty default: the bundled Temporal database's. */
const DEFAULTABLE_SECRETS = new Set(['POSTGRES_PASSWORD']);

/** Every environment entry that would put a secret literal into the file; empty when clean. */
function secretLiterals(document: ComposeDocument): string[] {
  const problems: string[] = [];
  for (const [serviceName, service] of Object.entries(document.services)) {
    for (const [name, value] of environmentOf(service)) {
      if (!SECRET_NAME.test(name) || value === null) continue; // null: passed through by name
      const match = INTERPOLATION.exec(value);
      if (!match) {
        problems.push(`services.${serviceName}.environment.${name} is a literal; use \${${name}:-} to pass it through`);
        continue;
      }
      const [, variable, , fallback] = match;
      if (fallback && !DEFAULTABLE_SECRETS.has(variable!)) {
        problems.push(
          `services.${serviceName}.environment.${name} defaults to a literal ("${fallback}"); only ` +
            `${[...DEFAULTABLE_SECRETS].join(', ')} (the bundled database's) may have a default`,
        );
      }
    }
  }
  return problems;
}

// ---- the one-shot setup scripts ------------------------------------------------------------------

/**
 * Resolves Compose interpolation in a value the way `docker compose up` would with none of the
 * variables set: `$$` -> `$`, `${NAME:-default}` / `${NAME-default}` -> default, `${NAME}` and
 * `$NAME` -> ''.
 */
function interpolateWithDefaults(value: string): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$[A-Za-z_][A-Za-z0-9_]*/g,
    (token, _name, fallback: string | undefined) => (token === '$$' ? '$' : (fallback ?? '')),
  );
}

/** `$` signs in a script that Compose would interpolate (anything but `$$`); empty when clean. */
function unescapedDollars(script: string): string[] {
  const found: string[] = [];
  for (const m of script.matchAll(/\$\$|\$[^$]?[^\s"]*/g)) if (m[0] !== '$$') found.push(m[0]);
  return found;
}

interface ScriptRun {
  status: number | null;
  output: string;
  calls: string[];
}

/**
 * Runs a one-shot service's `sh -ec` script with the Temporal tools replaced by stubs that record
 * their arguments. `stubs` maps a tool name to a shell snippet deciding its exit status from "$*".
 */
function runSetupScript(
  service: Service,
  stubs: Record<string, string>,
  extraEnv: Record<string, string> = {},
): ScriptRun {
  const entrypoint = service.entrypoint as string[];
  expect(entrypoint.slice(0, 2), 'one-shot services run their command as a /bin/sh script').toEqual(['/bin/sh', '-ec']);
  const script = interpolateWithDefaults((service.command as string[])[0]!);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'regionshift-compose-'));
  try {
    const log = path.join(dir, 'calls.log');
    for (const [tool, body] of Object.entries(stubs)) {
      const file = path.join(dir, tool);
      writeFileSync(file, `#!/bin/sh\necho "${tool} $*" >> "${log}"\n${body}\n`);
      chmodSync(file, 0o755);
    }
    const env: NodeJS.ProcessEnv = { PATH: `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}` };
    for (const [name, value] of environmentOf(service)) env[name] = interpolateWithDefaults(value ?? '');
    Object.assign(env, extraEnv);
    // The scripts sleep between retries; a stubbed `sleep` keeps the test fast.
    writeFileSync(path.join(dir, 'sleep'), '#!/bin/sh\nexit 0\n');
    chmodSync(path.join(dir, 'sleep'), 0o755);
    const run = spawnSync('/bin/sh', ['-ec', script], { env, encoding: 'utf8', timeout: 30_000 });
    const calls = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : [];
    return { status: run.status, output: `${run.stdout}${run.stderr}`, calls };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- tests ---------------------------------------------------------------------------------------

let cachedValidator: ComposeValidator | undefined;
/** Throws, failing the calling test, when the schema package is missing: never a silent skip. */
function validate(document: unknown): ReturnType<ComposeValidator> {
  cachedValidator ??= createComposeValidator(loadComposeSchema());
  return cachedValidator(document);
}

describe('docker-compose.yml is a valid Compose file', () => {
  it('matches the Compose Specification JSON schema', () => {
    const result = validate(compose);
    expect(result.errors).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('is accepted by `docker compose config` where the Compose plugin is installed, else by the schema alone', () => {
    if (!hasComposePlugin()) {
      // No plugin on this machine: the schema test above is the validity check.
      expect(validate(compose).valid).toBe(true);
      return;
    }
    const { status, output } = dockerComposeConfig(composeFile);
    expect(status, output).toBe(0);
  });

  it('rejects a copy whose service `ports` is a string instead of a list', () => {
    const broken = clone(compose);
    broken.services['alarm-intake']!.ports = 'not-a-list';
    const result = validate(broken);
    expect(result.valid).toBe(false);
    expect(result.errors.some((e) => e.startsWith('/services/alarm-intake/ports'))).toBe(true);
    if (hasComposePlugin()) withTempCompose(broken, (file) => expect(dockerComposeConfig(file).status).not.toBe(0));
  });

  it('rejects a copy with an unknown top-level key', () => {
    const broken = { ...clone(compose), servicez: {} };
    const result = validate(broken);
    expect(result.valid).toBe(false);
    expect(result.errors).toContain('(document root): must NOT have additional properties "servicez"');
    if (hasComposePlugin()) withTempCompose(broken, (file) => expect(dockerComposeConfig(file).status).not.toBe(0));
  });

  it('rejects a copy with a misspelt depends_on condition', () => {
    const broken = clone(compose);
    (broken.services.temporal!.depends_on as Record<string, { condition: string }>)['temporal-setup']!.condition =
      'service_completed';
    expect(validate(broken).valid).toBe(false);
  });

  it('loads the schema from the installed package, not from a copy in this repo', () => {
    const { file } = loadComposeSchema();
    expect(file.startsWith(path.join(repoRoot, 'node_modules') + path.sep)).toBe(true);
  });
});

describe('docker-compose.yml services', () => {
  it('every service names an image or a build', () => {
    const neither = services.filter(([, s]) => s.image === undefined && s.build === undefined).map(([n]) => n);
    expect(neither).toEqual([]);
  });

  it('every build names a context directory and a Dockerfile that exist in the repo', () => {
    const built = services.filter(([, s]) => s.build !== undefined);
    expect(built.length).toBeGreaterThan(0);
    for (const [name, service] of built) {
      const { context, dockerfile } = buildOf(service)!;
      const contextDir = path.resolve(repoRoot, context);
      expect(existsSync(contextDir) && statSync(contextDir).isDirectory(), `${name}: build context ${context}`).toBe(
        true,
      );
      expect(
        contextDir === repoRoot || contextDir.startsWith(repoRoot + path.sep),
        `${name}: context inside the repo`,
      ).toBe(true);
      const file = path.resolve(contextDir, dockerfile);
      expect(existsSync(file) && statSync(file).isFile(), `${name}: dockerfile ${dockerfile}`).toBe(true);
    }
  });

  it('every file the Dockerfile copies from the build context exists in the repo', () => {
    const dockerfiles = new Set(
      services.flatMap(([, s]) =>
        buildOf(s) ? [path.resolve(repoRoot, buildOf(s)!.context, buildOf(s)!.dockerfile)] : [],
      ),
    );
    for (const dockerfile of dockerfiles) {
      const context = path.dirname(dockerfile);
      const copies = readFileSync(dockerfile, 'utf8')
        .split('\n')
        .filter((line) => /^\s*(COPY|ADD)\s/i.test(line) && !/--from=/.test(line));
      expect(copies.length).toBeGreaterThan(0);
      for (const line of copies) {
        const args = line
          .trim()
          .split(/\s+/)
          .slice(1)
          .filter((a) => !a.startsWith('--'));
        for (const source of args.slice(0, -1)) {
          expect(
            existsSync(path.resolve(context, source)),
            `${path.basename(dockerfile)}: "${line.trim()}" needs ${source}`,
          ).toBe(true);
        }
      }
    }
  });

  it('runs the regionshift services from this repo, each with its own command', () => {
    const built = Object.fromEntries(
      services.filter(([, s]) => s.build !== undefined).map(([n, s]) => [n, commandOf(s)]),
    );
    expect(built).toEqual(EXPECTED_REGIONSHIFT_SERVICES);
    for (const [name, service] of services.filter(([, s]) => s.build !== undefined)) {
      expect(buildOf(service), name).toEqual({ context: '.', dockerfile: 'Dockerfile' });
    }
  });

  it('every command of a service built from this repo starts with a regionshift subcommand', () => {
    for (const [name, service] of services.filter(([, s]) => s.build !== undefined)) {
      const command = commandOf(service);
      expect(command, `${name} has a command`).toBeDefined();
      expect(REGIONSHIFT_SUBCOMMANDS as readonly string[], `${name}: ${JSON.stringify(command)}`).toContain(
        command![0],
      );
    }
  });

  it('gives every regionshift service the config read-only and the Temporal address', () => {
    for (const name of Object.keys(EXPECTED_REGIONSHIFT_SERVICES).filter((n) => n !== 'control-plane-init')) {
      const service = compose.services[name]!;
      const env = environmentOf(service);
      expect(env.get('REGIONSHIFT_CONFIG'), name).toBe('/app/regionshift.yaml');
      // Unset: the single cluster; set empty: the config's temporal.clusters (profile replicated).
      expect(env.get('TEMPORAL_ADDRESS'), name).toBe('${TEMPORAL_ADDRESS-temporal:7233}');
      expect(interpolateWithDefaults(env.get('TEMPORAL_ADDRESS')!), name).toBe('temporal:7233');
      const mount = (service.volumes ?? []).find(
        (v): v is Dict => typeof v === 'object' && v.target === '/app/regionshift.yaml',
      );
      expect(mount, `${name} mounts the config`).toBeDefined();
      expect(mount!.type).toBe('bind');
      expect(mount!.read_only).toBe(true);
      expect(interpolateWithDefaults(String(mount!.source))).toBe('./regionshift.yaml');
      expect(service.depends_on, name).toEqual({ 'temporal-init': { condition: 'service_completed_successfully' } });
    }
    expect(compose.services['alarm-intake']!.ports).toEqual(['8787:8787']);
    // The intake's journal holds accepted alarms not yet forwarded: it must be on a named volume.
    const journal = (compose.services['alarm-intake']!.volumes ?? []).find(
      (v): v is Dict => typeof v === 'object' && v.target === '/var/lib/regionshift',
    );
    expect(journal).toMatchObject({ type: 'volume', source: 'intake-journal' });
    expect(compose.volumes).toHaveProperty('intake-journal');
    expect(environmentOf(compose.services['alarm-intake']!).get('REGIONSHIFT_HOME')).toBe('/var/lib/regionshift');
  });

  it('every depends_on names a service of this file', () => {
    for (const [name, service] of services) {
      const deps = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
      for (const dep of deps) expect(compose.services[dep], `${name} depends on ${dep}`).toBeDefined();
    }
  });
});

describe('docker-compose.yml Temporal server', () => {
  const svc = (name: string): Service => {
    const s = compose.services[name];
    expect(s, `service ${name}`).toBeDefined();
    return s!;
  };

  it('runs temporalio/server, temporalio/ui and postgres at pinned versions', () => {
    for (const [name, image] of services.flatMap(([n, s]) => (s.image ? [[n, s.image] as const] : []))) {
      expect(image, `${name} pins a version tag`).toMatch(/^[^:]+:(?!latest$)[\w][\w.-]*$/);
    }
    expect(svc('temporal').image).toMatch(/^temporalio\/server:1\.\d+\.\d+$/);
    expect(svc('temporal-ui').image).toMatch(/^temporalio\/ui:\d+\.\d+\.\d+$/);
    expect(svc('postgresql').image).toBe('postgres:16');
    expect(svc('temporal-setup').image).toMatch(/^temporalio\/admin-tools:/);
  });

  it('persists to the bundled PostgreSQL, which has a healthcheck and a named volume', () => {
    const env = environmentOf(svc('temporal'));
    expect(env.get('DB')).toBe('postgres12');
    expect(env.get('POSTGRES_SEEDS')).toBe('postgresql');
    expect(env.get('POSTGRES_PWD')).toBe('${POSTGRES_PASSWORD:-temporal}');
    const pg = svc('postgresql');
    expect(JSON.stringify(pg.healthcheck)).toContain('pg_isready');
    const volume = String(pg.volumes?.[0]).split(':')[0]!;
    expect(compose.volumes && volume in compose.volumes, `named volume ${volume}`).toBe(true);
  });

  it('starts the server only after the schema setup completed, and the services after temporal-init', () => {
    expect(svc('temporal').depends_on).toMatchObject({
      'temporal-setup': { condition: 'service_completed_successfully' },
    });
    expect(svc('temporal-setup').depends_on).toEqual({ postgresql: { condition: 'service_healthy' } });
    expect(svc('temporal-init').depends_on).toEqual({ temporal: { condition: 'service_healthy' } });
    expect(environmentOf(svc('temporal-ui')).get('TEMPORAL_ADDRESS')).toBe('temporal:7233');
    expect(JSON.stringify(svc('temporal-ui').ports)).toContain(':8080:8080');
  });

  it('leaves no `$` in the one-shot scripts for Compose to interpolate', () => {
    for (const name of ['temporal-setup', 'temporal-init']) {
      expect(unescapedDollars((svc(name).command as string[])[0]!), name).toEqual([]);
    }
  });

  it('temporal-setup creates and migrates both databases from the admin-tools schema directories', () => {
    const run = runSetupScript(svc('temporal-setup'), { 'temporal-sql-tool': 'exit 0' });
    expect(run.status, run.output).toBe(0);
    const schema = '/etc/temporal/schema/postgresql/v12';
    expect(run.calls).toEqual([
      'temporal-sql-tool --db temporal create',
      'temporal-sql-tool --db temporal setup-schema -v 0.0',
      `temporal-sql-tool --db temporal update-schema -d ${schema}/temporal/versioned`,
      'temporal-sql-tool --db temporal_visibility create',
      'temporal-sql-tool --db temporal_visibility setup-schema -v 0.0',
      `temporal-sql-tool --db temporal_visibility update-schema -d ${schema}/visibility/versioned`,
    ]);
    const env = environmentOf(svc('temporal-setup'));
    expect(env.get('SQL_PLUGIN')).toBe('postgres12');
    expect(env.get('SQL_HOST')).toBe('postgresql');
    expect(env.get('SQL_PASSWORD')).toBe('${POSTGRES_PASSWORD:-temporal}');
  });

  it('temporal-setup reruns on existing databases but fails when a migration fails', () => {
    const rerun = runSetupScript(svc('temporal-setup'), {
      'temporal-sql-tool': 'case "$*" in *" create") exit 1 ;; esac; exit 0',
    });
    expect(rerun.status, rerun.output).toBe(0);
    expect(rerun.calls.filter((c) => c.includes('update-schema'))).toHaveLength(2);

    const broken = runSetupScript(svc('temporal-setup'), {
      'temporal-sql-tool': 'case "$*" in *update-schema*) exit 1 ;; esac; exit 0',
    });
    expect(broken.status).not.toBe(0);
  });

  it('temporal-init creates the namespace and registers every search attribute as Keyword', () => {
    const run = runSetupScript(svc('temporal-init'), {
      temporal: 'case "$*" in "operator namespace describe"*) exit 1 ;; esac; exit 0',
    });
    expect(run.status, run.output).toBe(0);
    expect(run.calls).toContain(
      'temporal operator namespace create --namespace default --retention 720h --address temporal:7233',
    );
    const created = run.calls
      .filter((c) => c.startsWith('temporal operator search-attribute create'))
      .map((c) => /--name (\S+) --type (\S+)/.exec(c)!.slice(1).join(':'));
    expect(created).toEqual(SEARCH_ATTRIBUTES.map((a) => `${a}:Keyword`));
  });

  it('temporal-init leaves an existing namespace and existing search attributes alone', () => {
    const run = runSetupScript(svc('temporal-init'), {
      temporal: `case "$*" in "operator search-attribute list"*) printf '%s\\n' ${SEARCH_ATTRIBUTES.join(' ')} ;; esac; exit 0`,
    });
    expect(run.status, run.output).toBe(0);
    expect(run.calls.filter((c) => / create /.test(c))).toEqual([]);
  });

  it('temporal-init fails, saying why, when the server never becomes healthy', () => {
    const run = runSetupScript(svc('temporal-init'), {
      temporal: 'case "$*" in "operator cluster health"*) exit 1 ;; esac; exit 0',
    });
    expect(run.status).not.toBe(0);
    expect(run.output).toContain('temporal-init: gave up');
  });
});

describe('docker-compose.yml replicated profile', () => {
  const svc = (name: string): Service => {
    const s = compose.services[name];
    expect(s, `service ${name}`).toBeDefined();
    return s!;
  };
  const CLUSTERS = {
    'temporal-us-west-2': { name: 'us-west-2', version: 1 },
    'temporal-us-east-1': { name: 'us-east-1', version: 2 },
  };

  it('adds one Temporal cluster per region, their schema setup and control-plane-init, and nothing else', () => {
    const profiled = services.filter(([, s]) => Array.isArray(s.profiles)).map(([n, s]) => [n, s.profiles]);
    expect(profiled).toEqual([
      ['temporal-setup-replicated', ['replicated']],
      ['temporal-us-west-2', ['replicated']],
      ['temporal-us-east-1', ['replicated']],
      ['control-plane-init', ['replicated']],
    ]);
    expect(svc('control-plane-init').depends_on).toEqual({
      'temporal-us-west-2': { condition: 'service_healthy' },
      'temporal-us-east-1': { condition: 'service_healthy' },
    });
    for (const name of Object.keys(CLUSTERS)) {
      expect(svc(name).image, name).toBe(svc('temporal').image);
      expect(svc(name).depends_on, name).toEqual({
        postgresql: { condition: 'service_healthy' },
        'temporal-setup-replicated': { condition: 'service_completed_successfully' },
      });
    }
    for (const name of ['temporal-setup-replicated', ...Object.keys(CLUSTERS)])
      expect(unescapedDollars((svc(name).command as string[])[0]!), name).toEqual([]);
  });

  it("temporal-setup-replicated creates and migrates each cluster's two databases", () => {
    const run = runSetupScript(svc('temporal-setup-replicated'), { 'temporal-sql-tool': 'exit 0' });
    expect(run.status, run.output).toBe(0);
    const dbs = [
      'temporal_us_west_2',
      'temporal_us_west_2_visibility',
      'temporal_us_east_1',
      'temporal_us_east_1_visibility',
    ];
    expect(run.calls.filter((c) => c.endsWith(' create'))).toEqual(
      dbs.map((db) => `temporal-sql-tool --db ${db} create`),
    );
    expect(run.calls.filter((c) => c.includes('update-schema'))).toEqual(
      dbs.map(
        (db) =>
          `temporal-sql-tool --db ${db} update-schema -d /etc/temporal/schema/postgresql/v12/${db.endsWith('_visibility') ? 'visibility' : 'temporal'}/versioned`,
      ),
    );
  });

  it('each cluster starts the server on a config naming it, with its own failover version, global namespaces and forwarding as the local stack has them', () => {
    const local = parse(
      clusterConfigYaml({ name: 'us-west-2', initialFailoverVersion: 1, port: 7233, dir: '/x' }),
    ) as Dict & { clusterMetadata: Dict; dcRedirectionPolicy: Dict };
    for (const [name, want] of Object.entries(CLUSTERS)) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'regionshift-compose-cluster-'));
      try {
        const run = runSetupScript(
          svc(name),
          { 'temporal-server': 'exit 0', hostname: 'echo 10.9.8.7' },
          { CLUSTER_CONFIG_DIR: dir },
        );
        expect(run.status, run.output).toBe(0);
        expect(run.calls).toEqual([
          'hostname -i',
          `temporal-server --root ${dir} --config . --env config --allow-no-auth start`,
        ]);
        const config = parse(readFileSync(path.join(dir, 'config.yaml'), 'utf8')) as Dict & {
          clusterMetadata: Dict & { clusterInformation: Record<string, Dict> };
          persistence: { datastores: Record<string, { sql: Dict }> };
          global: { membership: Dict };
          dcRedirectionPolicy: Dict;
        };
        const meta = config.clusterMetadata;
        expect([meta.currentClusterName, meta.masterClusterName, Object.keys(meta.clusterInformation)], name).toEqual([
          want.name,
          want.name,
          [want.name],
        ]);
        expect(meta.clusterInformation[want.name]).toMatchObject({
          enabled: true,
          initialFailoverVersion: want.version,
          rpcAddress: `${name}:7233`,
        });
        expect(meta.enableGlobalNamespace).toBe(local.clusterMetadata.enableGlobalNamespace);
        expect(meta.failoverVersionIncrement).toBe(local.clusterMetadata.failoverVersionIncrement);
        expect(config.dcRedirectionPolicy).toEqual(local.dcRedirectionPolicy);
        expect(config.global.membership.broadcastAddress).toBe('10.9.8.7');
        const prefix = `temporal_${want.name.replaceAll('-', '_')}`;
        expect(Object.values(config.persistence.datastores).map((d) => [d.sql.databaseName, d.sql.password])).toEqual([
          [prefix, 'temporal'],
          [`${prefix}_visibility`, 'temporal'],
        ]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});

describe('docker-compose.yml secrets', () => {
  it('writes no secret literal: every *SECRET*/*TOKEN*/*PASSWORD*/*KEY* variable is an interpolation', () => {
    expect(secretLiterals(compose)).toEqual([]);
  });

  it('checks the variables it should (the check is not vacuous)', () => {
    const checked = services.flatMap(([n, s]) =>
      [...environmentOf(s).keys()].filter((k) => SECRET_NAME.test(k)).map((k) => `${n}.${k}`),
    );
    expect(checked).toEqual(
      expect.arrayContaining([
        'postgresql.POSTGRES_PASSWORD',
        'temporal.POSTGRES_PWD',
        'temporal-setup.SQL_PASSWORD',
        'worker-us-west-2.AWS_SECRET_ACCESS_KEY',
        'slack-bot.SLACK_BOT_TOKEN',
        'slack-bot.SLACK_SIGNING_SECRET',
      ]),
    );
  });

  it('flags a literal token and a literal default in a broken copy', () => {
    const broken = clone(compose);
    (broken.services['slack-bot']!.environment as Dict).SLACK_BOT_TOKEN = 'xoxb-not-a-real-token';
    (broken.services['worker-us-east-1']!.environment as Dict).AWS_SECRET_ACCESS_KEY =
      '${AWS_SECRET_ACCESS_KEY:-hunter2}';
    broken.services['control-worker']!.environment = ['API_KEY=abc123'];
    expect(secretLiterals(broken)).toEqual([
      'services.worker-us-east-1.environment.AWS_SECRET_ACCESS_KEY defaults to a literal ("hunter2"); only POSTGRES_PASSWORD (the bundled database\'s) may have a default',
      'services.control-worker.environment.API_KEY is a literal; use ${API_KEY:-} to pass it through',
      'services.slack-bot.environment.SLACK_BOT_TOKEN is a literal; use ${SLACK_BOT_TOKEN:-} to pass it through',
    ]);
  });

  it('keeps cloud and Slack credentials to the services that use them', () => {
    for (const [name, service] of services) {
      const env = environmentOf(service);
      const aws = [...env.keys()].some((k) => k.startsWith('AWS_') && k !== 'AWS_REGION');
      const slack = [...env.keys()].some((k) => k.startsWith('SLACK_'));
      expect(aws, `${name} gets AWS credentials`).toBe(name.startsWith('worker-'));
      expect(slack, `${name} gets Slack credentials`).toBe(name === 'slack-bot');
    }
  });
});

describe('Dockerfile and .dockerignore', () => {
  const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
  const instructions = dockerfile.split('\n').filter((l) => /^[A-Z]+\s/.test(l));

  it('builds in one node:20-bookworm-slim stage and runs from another, as the node user', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(instructions.filter((l) => l.startsWith('FROM ')).map((l) => l.trim())).toEqual([
      'FROM ${NODE_IMAGE} AS build',
      'FROM ${NODE_IMAGE} AS runtime',
    ]);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/npm run build/);
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'));
    for (const dir of ['dist', 'bin', 'node_modules', 'runbooks', 'package.json']) {
      expect(runtime, `runtime stage copies ${dir}`).toMatch(
        new RegExp(`COPY --from=build /app/${dir.replace('.', '\\.')}\\b`),
      );
    }
    expect(instructions.filter((l) => l.startsWith('USER ')).at(-1)).toBe('USER node');
  });

  it('enters through the CLI launcher that exists in the repo', () => {
    expect(instructions).toContain('ENTRYPOINT ["node", "bin/regionshift.js"]');
    expect(existsSync(path.join(repoRoot, 'bin', 'regionshift.js'))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).scripts.build).toMatch(
      /^tsc -p tsconfig\.json/,
    );
  });

  it('keeps local state, build output and secrets out of the build context', () => {
    const ignored = readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.regionshift', '.git', '.env']));
  });
});

afterAll(() => {
  rmSync(path.join(repoRoot, `.vitest-compose-${process.pid}.yml`), { force: true });
});
