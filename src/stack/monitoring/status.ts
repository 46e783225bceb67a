// `stack status` for the monitoring components: each process as it answers now, and for
// Prometheus the probes and alerts it sees (a probe failing or an alert firing is the first thing
// a person asks about when a region moved by itself).
import type { Config } from '../../lib/config/schema';
import { httpStatus } from '../../lib/net';
import type { RecordedProcess, StackState } from '../state';
import type { ComponentStatus } from '../status';
import { workerSkipReason } from '../workers';
import {
  ALERTMANAGER,
  INTAKE,
  PROMETHEUS,
  alertmanagerUrl,
  exporterUrl,
  intakeUrl,
  monitoringEnabled,
  monitoringPlan,
  prometheusUrl,
} from './config';

type Live = (state: StackState, name: string) => RecordedProcess | undefined;

/** Firing alerts and failing probes, in one line, from Prometheus's API. */
async function prometheusDetail(url: string): Promise<string | undefined> {
  try {
    const [alerts, probes] = await Promise.all([
      fetch(`${url}/api/v1/alerts`, { signal: AbortSignal.timeout(2_000) }).then(
        (r) => r.json() as Promise<{ data: { alerts: Array<{ state: string; labels: Record<string, string> }> } }>,
      ),
      fetch(`${url}/api/v1/query?query=${encodeURIComponent('probe_success{job="regionshift-pg-probe"} == 0')}`, {
        signal: AbortSignal.timeout(2_000),
      }).then((r) => r.json() as Promise<{ data: { result: Array<{ metric: Record<string, string> }> } }>),
    ]);
    const firing = alerts.data.alerts
      .filter((a) => a.state === 'firing')
      .map(
        (a) =>
          `${a.labels.alertname}${a.labels.probe_from ? ` ${a.labels.probe_from}->${a.labels.probe_to}` : a.labels.region ? ` ${a.labels.region}` : ''}`,
      );
    const failing = probes.data.result.map((r) => `${r.metric.probe_from}->${r.metric.probe_to}`);
    const parts = [
      failing.length ? `probes failing: ${failing.join(', ')}` : '',
      firing.length ? `firing: ${firing.join(', ')}` : '',
    ].filter(Boolean);
    return parts.length ? parts.join('; ') : undefined;
  } catch {
    return undefined;
  }
}

export async function monitoringStatus(
  config: Config,
  home: string,
  configFile: string,
  state: StackState,
  live: Live,
): Promise<ComponentStatus[]> {
  if (!monitoringEnabled(config)) return [];
  const plan = monitoringPlan(config, home, configFile);
  const one = async (
    name: string,
    kind: ComponentStatus['kind'],
    address: string,
    healthUrl: string,
    extra: Partial<ComponentStatus> = {},
  ): Promise<ComponentStatus> => {
    const recorded = state.processes[name];
    const rec = live(state, name);
    const s: ComponentStatus = {
      name,
      kind,
      address,
      pid: rec?.pid ?? null,
      health: 'down',
      ...(recorded ? { log: recorded.log } : {}),
      ...extra,
    };
    if (!rec) return { ...s, detail: 'not running' };
    const code = await httpStatus(healthUrl, 2_000);
    if (code === 200) s.health = 'up';
    else s.detail = `pid ${rec.pid} runs but ${healthUrl} answers ${code ?? 'nothing'}`;
    return s;
  };
  const skip = workerSkipReason();
  const all = await Promise.all([
    one(PROMETHEUS, 'prometheus', prometheusUrl(plan), `${prometheusUrl(plan)}/-/ready`),
    one(ALERTMANAGER, 'alertmanager', alertmanagerUrl(plan), `${alertmanagerUrl(plan)}/-/ready`),
    ...plan.vantagePoints.map((vp) =>
      one(vp.name, 'blackbox', exporterUrl(vp.port), `${exporterUrl(vp.port)}/metrics`, { region: vp.region }),
    ),
    ...plan.exporters.map((e) =>
      one(e.name, 'postgres-exporter', exporterUrl(e.port), `${exporterUrl(e.port)}/metrics`, {
        service: e.service,
        region: e.region,
      }),
    ),
    skip
      ? Promise.resolve<ComponentStatus>({
          name: INTAKE,
          kind: 'intake',
          address: intakeUrl(plan),
          pid: null,
          health: 'skipped',
          detail: skip,
        })
      : one(INTAKE, 'intake', intakeUrl(plan), `${intakeUrl(plan)}/healthz`),
  ]);
  const prom = all[0]!;
  if (prom.health === 'up') {
    const detail = await prometheusDetail(prometheusUrl(plan));
    if (detail) prom.detail = detail;
  }
  return all;
}
