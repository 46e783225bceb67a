// What a person (or the Slack bot on their behalf) signs when they approve, reject, abort or decide
// a case: one canonical text naming the exact run, step or case, and the decision, so a signature
// given for one run or step is worthless for any other. Pure: imported by workflows (types), the
// CLI and the Slack bot (to sign), and the workers (to verify).

/** The SSH signature namespace (`ssh-keygen -Y sign -n …`): a signature made for anything else never verifies here. */
export const SSH_NAMESPACE = 'regionshift-decision';

/** The environment variable that holds the key the Slack bot and the workers share. */
export const SLACK_DECISION_KEY_ENV = 'REGIONSHIFT_SLACK_DECISION_KEY';

/** How old a signature may be when a worker checks it; a little clock skew ahead is tolerated. */
export const SIGNATURE_MAX_AGE_MS = 10 * 60_000;
export const SIGNATURE_MAX_SKEW_MS = 60_000;

export type DecisionKind =
  'approve' | 'reject' | 'abort' | 'case' | 'retry' | 'skip' | 'compensate' | 'pause' | 'resume';

/** What is decided, named exactly. */
export interface DecisionClaim {
  kind: DecisionKind;
  /** The workflow the decision is sent to (a run, or the cases workflow of a case decision). */
  workflowId: string;
  /** That workflow's run id; empty for a case decision (its workflow starts after signing). */
  runId: string;
  /** The pending step of an approval or of a retry, skip or compensate; `run` for an abort, pause or resume; the case id and action for a case. */
  subject: string;
  /** Who decides: an approver's name (SSH) or a Slack user id (the bot). */
  by: string;
  /** Slack user groups the bot found `by` in; signed, so nobody can add one on the way. */
  groups: string[];
  reason: string;
}

/** `ssh`: an approver's own SSH key; `slack-bot`: HMAC-SHA256 by the Slack bot after it mapped the Slack user. */
export type SignatureScheme = 'ssh' | 'slack-bot';

export interface DecisionSignature {
  scheme: SignatureScheme;
  /** When it was signed (ISO 8601): workers refuse signatures older than SIGNATURE_MAX_AGE_MS. */
  at: string;
  /** Random, so two decisions never share a signature and a replayed one is recognised. */
  nonce: string;
  /** ssh: the armored SSHSIG block; slack-bot: hex HMAC-SHA256. */
  value: string;
}

/** The bytes that are signed: a JSON array, so no field can bleed into the next. */
export function canonicalMessage(
  claim: DecisionClaim,
  sig: Pick<DecisionSignature, 'scheme' | 'at' | 'nonce'>,
): string {
  return `${JSON.stringify([
    'regionshift-decision/1',
    sig.scheme,
    claim.kind,
    claim.workflowId,
    claim.runId,
    claim.subject,
    claim.by,
    [...claim.groups].sort(),
    claim.reason,
    sig.at,
    sig.nonce,
  ])}\n`;
}

/** How a verified decision was signed, for the run's record. */
export interface VerifiedDecision {
  by: string;
  scheme: SignatureScheme;
  /** ssh: the key's SHA256 fingerprint; slack-bot: `slack-bot`. Two approvals of one gate need two of these. */
  key: string;
  /** One line for the record: "carol (ssh key SHA256:…)" or "UCAROL01 (via Slack, signed by the bot)". */
  signedAs: string;
}

/** The failure type of a refused decision (activities/approvals.ts); the run refuses the update with its message. */
export const DECISION_REFUSED = 'DecisionRefused';

/** What a case decision's signature names: the case and the action chosen. */
export function caseSubject(r: { caseId: string; action: string }): string {
  return `${r.caseId} ${r.action}`;
}
