// Which service, region and severity an alarm is about: the services' `triggers.alarms` rules.
// An alarm may concern several services (shared infrastructure); each gets it once.
import type { Config, Service } from '../lib/config/schema';
import { serviceTriggersOf, type AlarmRule } from '../lib/config/triggers';
import type { RawAlarm } from './parse';
import type { AlarmSignal } from '../contract/guardian/types';

export interface Mapped {
  service: string;
  signal: AlarmSignal;
}

function nameMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

function ruleRegion(rule: AlarmRule, alarm: RawAlarm): string | undefined {
  return rule.region ?? (rule.regionLabel ? alarm.labels?.[rule.regionLabel] : undefined);
}

function matches(rule: AlarmRule, alarm: RawAlarm, service: Service): string | undefined {
  if (rule.source && rule.source !== alarm.source) return undefined;
  if (!nameMatches(rule.name, alarm.name)) return undefined;
  for (const [k, v] of Object.entries(rule.labels ?? {})) if (alarm.labels?.[k] !== v) return undefined;
  const region = ruleRegion(rule, alarm);
  return region && service.regions.includes(region) ? region : undefined;
}

export function mapAlarm(config: Config, alarm: RawAlarm, receivedAt: number): Mapped[] {
  const out: Mapped[] = [];
  for (const service of config.services) {
    for (const rule of serviceTriggersOf(service).alarms) {
      const region = matches(rule, alarm, service);
      if (!region) continue;
      out.push({
        service: service.name,
        signal: {
          source: alarm.source,
          name: alarm.name,
          region,
          severity: rule.severity,
          state: alarm.state,
          at: alarm.at,
          receivedAt,
          ...(alarm.reason ? { reason: alarm.reason } : {}),
          ...(alarm.since !== undefined ? { since: alarm.since } : {}),
          ...(rule.vantageLabel && alarm.labels?.[rule.vantageLabel]
            ? { vantage: alarm.labels[rule.vantageLabel] }
            : {}),
        },
      });
      break;
    }
  }
  return out;
}
