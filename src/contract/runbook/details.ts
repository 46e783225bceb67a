// A run's "current details" (Temporal UI, User Metadata tab): a heading and the step table, as
// markdown. The UI renders it unstyled in a narrow pane, where the browser breaks cells at every
// hyphen ("eu-" / "central-1", "repoint-" / "standbys"): step ids and regions are kept whole with
// <nobr> (the UI's renderer passes it; copying the text still copies plain hyphens). Pure: the
// runbook workflow calls it on every publish.
import type { RunRecord } from './types';

/** One cell: a `|` would end it and a line break would end the row. */
function cell(text: string): string {
  return text
    .replace(/\r?\n+/g, ' ')
    .replace(/\|/g, '\\|')
    .trim();
}

const whole = (text: string | undefined): string => (text ? `<nobr>${cell(text)}</nobr>` : '');

export function runDetails(
  rec: Pick<RunRecord, 'kind' | 'service' | 'source' | 'target' | 'mode' | 'dryRun' | 'status' | 'steps'>,
): string {
  const rows = rec.steps.map(
    (s) => `| ${whole(s.id)} | ${whole(s.region)} | ${s.status} | ${cell(s.detail ?? s.error ?? '')} |`,
  );
  return [
    `**${rec.kind} ${rec.service}** ${rec.source ?? '?'} → ${rec.target} (${rec.mode}${rec.dryRun ? ', dry run' : ''}): ${rec.status}`,
    '',
    '| step | region | status | detail |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}
