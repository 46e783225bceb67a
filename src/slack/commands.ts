// The slash command's grammar. Parsing never throws: a bad command is answered with usage.

export type SlackCommand =
  | { kind: 'help' }
  | { kind: 'status'; service?: string }
  | { kind: 'plan' | 'failover'; service: string; target: string; mode: 'planned' | 'unplanned' }
  | { kind: 'reconcile'; service: string }
  | { kind: 'failback'; service: string; override?: string }
  | { kind: 'cases'; service?: string; caseId?: string }
  | { kind: 'abort'; run: string; reason?: string }
  | { kind: 'bad'; problem: string };

export function usage(command: string): string {
  return [
    `*${command}* — failover runbooks for multi-region services`,
    `• \`${command} status [service]\` — the latest run, its steps, and the guardian's debounce / cooldown`,
    `• \`${command} plan <service> to <region> [unplanned]\` — preflight and the plan with real values; changes nothing`,
    `• \`${command} failover <service> to <region> [unplanned]\` — start a failover (planned unless you say unplanned)`,
    `• \`${command} reconcile <service>\` — after an unplanned failover: re-apply the old primary's lost writes that are safe, open a case for each of the rest`,
    `• \`${command} cases [service [case id]]\` — open reconciliation cases with both versions and Accept / Reject / Compensate buttons`,
    `• \`${command} failback <service> [override: <reason>]\` — back to the old primary; refused while cases are open unless an approver overrides with a reason (recorded)`,
    `• \`${command} abort <service|run id> [reason]\` — stop a run; what it did is undone`,
    `• \`${command} help\``,
  ].join('\n');
}

export function parseCommand(text: string): SlackCommand {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const [verb, ...args] = words;
  switch ((verb ?? 'help').toLowerCase()) {
    case 'help':
      return { kind: 'help' };
    case 'status':
      if (args.length > 1) return { kind: 'bad', problem: '`status` takes at most one service' };
      return { kind: 'status', ...(args[0] ? { service: args[0] } : {}) };
    case 'plan':
    case 'failover': {
      const kind = verb!.toLowerCase() as 'plan' | 'failover';
      const [service, to, target, mode, ...extra] = args;
      if (!service || to?.toLowerCase() !== 'to' || !target)
        return {
          kind: 'bad',
          problem: `\`${kind}\` needs a service and a target: \`${kind} <service> to <region> [unplanned]\``,
        };
      if (extra.length > 0 || (mode !== undefined && mode !== 'unplanned' && mode !== 'planned')) {
        return {
          kind: 'bad',
          problem: `unexpected \`${[mode, ...extra].filter(Boolean).join(' ')}\`: the mode is \`planned\` (default) or \`unplanned\``,
        };
      }
      return { kind, service, target, mode: mode === 'unplanned' ? 'unplanned' : 'planned' };
    }
    case 'reconcile': {
      if (args.length !== 1)
        return { kind: 'bad', problem: '`reconcile` needs exactly one service: `reconcile <service>`' };
      return { kind: 'reconcile', service: args[0]! };
    }
    case 'failback': {
      const [service] = args;
      if (!service)
        return { kind: 'bad', problem: '`failback` needs a service: `failback <service> [override: <reason>]`' };
      // The reason is kept as typed (from the raw text, not the split words): it goes into the run's audit record.
      const rest = text.trim().replace(/^\S+\s+\S+\s*/, '');
      if (!rest) return { kind: 'failback', service };
      const m = /^override\b:?\s*([\s\S]*)$/i.exec(rest);
      if (!m) return { kind: 'bad', problem: `unexpected \`${rest}\`: \`failback <service> [override: <reason>]\`` };
      if (!m[1]!.trim())
        return {
          kind: 'bad',
          problem:
            '`override:` needs a reason: it is recorded in the run, e.g. `failback <service> override: customers notified, cases decided by finance`',
        };
      return { kind: 'failback', service, override: m[1]!.trim() };
    }
    case 'cases': {
      if (args.length > 2)
        return { kind: 'bad', problem: '`cases` takes a service and a case id at most: `cases [service [case id]]`' };
      return { kind: 'cases', ...(args[0] ? { service: args[0] } : {}), ...(args[1] ? { caseId: args[1] } : {}) };
    }
    case 'abort': {
      const [run, ...reason] = args;
      if (!run)
        return { kind: 'bad', problem: '`abort` needs the service or run id: `abort <service|run id> [reason]`' };
      return { kind: 'abort', run, ...(reason.length ? { reason: reason.join(' ') } : {}) };
    }
    default:
      return { kind: 'bad', problem: `unknown command \`${verb}\`` };
  }
}
