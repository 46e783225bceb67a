// `regionshift control-plane status | failover --to REGION | init`: the replicated control plane
// (temporal.clusters) seen and moved from outside Temporal. init links clusters started elsewhere
// (docker-compose's replicated profile, a production deploy) the way `stack up` links its own.
import { parseArgs } from 'node:util';
import { clusterEndpoints, failoverControlPlane, namespaceViewAt } from '../lib/runs/control-plane';
import { InputError } from '../lib/runs/client';
import { connectCluster, linkClusters, registerGlobalNamespace, type ClusterSpec } from '../stack/control-plane';
import { SEARCH_ATTRIBUTES } from '../stack/temporal';
import { loadConfig } from '../lib/config/load';
import { temporalCredentials } from '../lib/config/temporal-credentials';
import { guard } from './exit';
import { EXIT } from './exit';

const USAGE =
  'usage: regionshift control-plane status [--json] | failover --to REGION [--json] | init [--timeout SECONDS] [--config FILE]';
/** proto enum temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD */
const KEYWORD = 2;

export function controlPlaneCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const [sub, ...rest] = argv;
    const { values } = parseArgs({
      args: rest,
      options: {
        to: { type: 'string' },
        json: { type: 'boolean', default: false },
        config: { type: 'string' },
        timeout: { type: 'string', default: '120' },
      },
      strict: true,
    });
    const cfg = loadConfig(values.config);
    const clusters = clusterEndpoints(cfg);
    if (!clusters)
      throw new InputError(
        'the control plane is a single cluster: list one per region in temporal.clusters (or set stack.controlPlane: replicated for the local stack)',
      );
    const namespace = cfg.temporal.namespace;
    if (sub === 'status') {
      const rows = await Promise.all(
        clusters.map(async (c) => {
          try {
            const v = await namespaceViewAt(cfg, c.address);
            return {
              region: c.region,
              address: c.address,
              up: true,
              active: v.active,
              failoverVersion: v.failoverVersion,
            };
          } catch (err) {
            return { region: c.region, address: c.address, up: false, error: (err as Error).message };
          }
        }),
      );
      if (json) console.log(JSON.stringify({ namespace, clusters: rows }, null, 2));
      else {
        for (const r of rows) {
          const what = !r.up
            ? `down: ${r.error}`
            : r.active === r.region
              ? `namespace ${namespace} active here (failover version ${r.failoverVersion})`
              : `standby (sees ${namespace} active in ${r.active}, failover version ${r.failoverVersion})`;
          console.log(`${r.region.padEnd(14)} ${r.address.padEnd(22)} ${what}`);
        }
      }
      return rows.some((r) => r.up) ? EXIT.ok : EXIT.failed;
    }
    if (sub === 'failover') {
      if (!values.to) throw new InputError(`control-plane failover needs --to REGION\n${USAGE}`);
      if (!clusters.some((c) => c.region === values.to))
        throw new InputError(
          `--to ${values.to}: no such cluster; clusters: ${clusters.map((c) => c.region).join(', ')}`,
        );
      const moved = await failoverControlPlane(cfg, values.to);
      if (json) console.log(JSON.stringify({ namespace, ...moved }));
      else
        console.log(
          moved.changed
            ? `namespace ${namespace} failed over ${moved.from} → ${moved.to} (failover version ${moved.failoverVersion})`
            : `namespace ${namespace} already active in ${moved.to}`,
        );
      return EXIT.ok;
    }
    if (sub === 'init') {
      const timeoutMs = Number(values.timeout) * 1000;
      if (!(timeoutMs > 0)) throw new InputError(`--timeout ${values.timeout} is not a number of seconds`);
      const specs: ClusterSpec[] = clusters.map((c, i) => ({
        name: c.region,
        initialFailoverVersion: i + 1,
        port: Number(c.address.split(':')[1]),
        dir: '',
        address: c.address,
      }));
      const credentials = temporalCredentials(cfg);
      const conns = await Promise.all(
        specs.map(async (spec) => ({ spec, conn: await connectCluster(spec, timeoutMs, credentials) })),
      );
      try {
        await linkClusters(conns);
        await registerGlobalNamespace(
          conns[0]!.conn,
          namespace,
          specs.map((s) => s.name),
          specs[0]!.name,
          timeoutMs,
        );
        // Search attributes are namespace settings: the active cluster takes them, the others replicate them.
        const view = await namespaceViewAt(cfg, clusters[0]!.address);
        const active = conns.find((c) => c.spec.name === view.active) ?? conns[0]!;
        const have = Object.keys(
          (await active.conn.operatorService.listSearchAttributes({ namespace })).customAttributes ?? {},
        );
        const missing = SEARCH_ATTRIBUTES.filter((n) => !have.includes(n));
        if (missing.length)
          await active.conn.operatorService.addSearchAttributes({
            namespace,
            searchAttributes: Object.fromEntries(missing.map((n) => [n, KEYWORD])),
          });
        if (!json)
          console.log(
            `control plane: ${specs.map((s) => s.name).join(', ')} linked; namespace ${namespace} global, active in ${view.active}; search attributes ${missing.length ? `added: ${missing.join(', ')}` : 'present'}`,
          );
        else
          console.log(
            JSON.stringify({
              namespace,
              clusters: specs.map((s) => s.name),
              active: view.active,
              addedSearchAttributes: missing,
            }),
          );
      } finally {
        await Promise.allSettled(conns.map((c) => c.conn.close()));
      }
      return EXIT.ok;
    }
    throw new InputError(`control-plane: unknown subcommand "${sub ?? ''}"\n${USAGE}`);
  });
}
