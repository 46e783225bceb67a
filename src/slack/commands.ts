// The slash command's grammar. Parsing never throws: a bad command is answered with usage.

export type SlackCommand =
  | { kind: 'help' }
  | { kind: 'status'; service?: string }
  | { kind: 'plan' | 'failover'; service: string; target: string; mode: 'planned' | 'unplanned' }
  | { kind: 'failback' | 'reconcile'; rest: string }
  | { kind: 'abort'; run: string; reason?: string }
  | { kind: 'bad'; problem: string };

export function usage(command: string): string {
  return [
    `*${command}* — failover runbooks for multi-region services`,
    `• \`${command} status [service]\` — the latest run, its steps, and the guardian's debounce / cooldown`,
    `• \`${command} plan <service> to <region> [unplanned]\` — preflight and the plan with real values; changes nothing`,
    `• \`${command} failover <service> to <region> [unplanned]\` — start a failover (planned unless you say unplanned)`,
    `• \`${command} failback <service>\` · \`${command} reconcile <service>\` — not available in Slack yet`,
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
      if (!service || to?.toLowerCase() !== 'to' || !target) return { kind: 'bad', problem: `\`${kind}\` needs a service and a target: \`${kind} <service> to <region> [unplanned]\`` };
      if (extra.length > 0 || (mode !== undefined && mode !== 'unplanned' && mode !== 'planned')) {
        return { kind: 'bad', problem: `unexpected \`${[mode, ...extra].filter(Boolean).join(' ')}\`: the mode is \`planned\` (default) or \`unplanned\`` };
      }
      return { kind, service, target, mode: mode === 'unplanned' ? 'unplanned' : 'planned' };
    }
    case 'failback':
    case 'reconcile':
      return { kind: verb!.toLowerCase() as 'failback' | 'reconcile', rest: args.join(' ') };
    case 'abort': {
      const [run, ...reason] = args;
      if (!run) return { kind: 'bad', problem: '`abort` needs the service or run id: `abort <service|run id> [reason]`' };
      return { kind: 'abort', run, ...(reason.length ? { reason: reason.join(' ') } : {}) };
    }
    default:
      return { kind: 'bad', problem: `unknown command \`${verb}\`` };
  }
}
