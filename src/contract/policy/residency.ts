// Data residency: where a service's data may live, and so where it may fail over to. Pure (no
// imports, no Node APIs): the CLI checks it before starting a run, and the runbook workflow checks
// it again in preflight, so a run started by any other means is refused too.

/** A service's residency class, resolved from the config (residency.classes.<class>). */
export interface ResidencyRule {
  /** The class name (services[].dataResidency.class), e.g. eu. */
  class: string;
  /** Region names, or prefixes ending in `*` (eu-*), where data of the class may live. */
  allowedRegions: string[];
  /** The config explicitly permits failing over outside allowedRegions. */
  allowOutside: boolean;
}

interface ResidencyConfig {
  residency?: { classes: Record<string, { allowedRegions: string[]; allowOutside: boolean }> };
}

/** The rule for a service, or undefined when it has no residency class. */
export function residencyRuleOf(
  config: ResidencyConfig,
  service: { dataResidency?: { class: string } },
): ResidencyRule | undefined {
  const cls = service.dataResidency?.class;
  if (cls === undefined) return undefined;
  const def = config.residency?.classes[cls];
  // An unknown class is a config error the schema reports; here it allows nowhere.
  return { class: cls, allowedRegions: def?.allowedRegions ?? [], allowOutside: def?.allowOutside ?? false };
}

export function regionAllowed(rule: ResidencyRule, region: string): boolean {
  return rule.allowedRegions.some((pattern) =>
    pattern.endsWith('*') ? region.startsWith(pattern.slice(0, -1)) : region === pattern,
  );
}

/**
 * Why a failover of `service` to `target` breaks its residency rule, or undefined when it does
 * not (no rule, target allowed, or allowOutside set).
 */
export function residencyViolation(
  rule: ResidencyRule | undefined,
  service: string,
  target: string,
): string | undefined {
  if (!rule || rule.allowOutside || regionAllowed(rule, target)) return undefined;
  return (
    `data-residency rule "${rule.class}" refuses a failover of ${service} to ${target}: ${service}'s data is of class ${rule.class}, ` +
    `which may only live in ${rule.allowedRegions.join(', ') || 'no region'} (residency.classes.${rule.class}.allowedRegions). ` +
    `Pick a target there, or, if moving it outside is permitted, set residency.classes.${rule.class}.allowOutside: true`
  );
}
