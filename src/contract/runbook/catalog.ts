// The actions a runbook step may name. Pure data with no imports: workflow code uses it, and
// workflow code must stay deterministic and free of Node APIs.

/**
 * Which region's worker runs an action: the run's source, its target, every other region of the
 * service (each on its own worker, at once), or the workflow itself.
 */
export type Placement = 'source' | 'target' | 'others' | 'control';

export interface ActionSpec {
  /** Where the action runs unless the step says otherwise. */
  placement: Placement;
  /**
   * How it is undone when a run fails or is aborted (in reverse order, workflows/compensation.ts):
   * only an action with one may register an undo.
   */
  compensate?: 'db.unfenceWrites' | 'traffic.restore' | 'cache.unfence';
  /** Why it cannot be undone, for the run's report. */
  irreversible?: string;
  /**
   * Actions this one may run at the same time as, when the runbook puts it right after one of
   * them: it needs nothing they produce and changes nothing they read, so waiting for them only
   * adds a workflow-task round trip to the run.
   */
  alongside?: readonly string[];
  summary: string;
}

export const ACTIONS = {
  preflight: { placement: 'control', summary: 'Discover the topology: writer, standbys, replication, traffic' },
  'db.fenceWrites': {
    placement: 'source',
    compensate: 'db.unfenceWrites',
    summary: 'Fence writes in the source region and prove it',
  },
  'db.waitForLag': { placement: 'target', summary: 'Wait until the target has replayed everything the source wrote' },
  'db.promote': {
    placement: 'target',
    irreversible: 'a promoted database is not demoted automatically; fail back with a planned run',
    summary: 'Promote the target to primary',
  },
  'traffic.shift': {
    placement: 'target',
    compensate: 'traffic.restore',
    summary: 'Shift traffic to the target region',
  },
  // The probe writes to the promoted database directly, not through the traffic records.
  'app.verifyWrites': {
    placement: 'target',
    alongside: ['traffic.shift'],
    summary: 'Write and read back through the new primary',
  },
  'db.rejoinAsStandby': { placement: 'source', summary: 'Bring the old primary back as a standby of the new one' },
  'db.repointStandbys': { placement: 'others', summary: 'Every other standby follows the new primary' },
  'db.fenceOnReturn': { placement: 'source', summary: 'Fence the old primary as soon as it answers again' },
  // The cache moves with the database (activities/cache/); steps gated on the condition `cache`.
  'cache.fence': {
    placement: 'source',
    compensate: 'cache.unfence',
    summary: "Fence writes to the source region's cache and prove it",
  },
  'cache.promote': {
    placement: 'target',
    irreversible: 'a promoted cache is not demoted automatically',
    summary: "Promote the target region's cache once it has every fenced write",
  },
  'cache.repoint': { placement: 'target', summary: "Every other region's cache follows the new primary" },
  // Failback: the old primary's cache came back a writer of its own; it follows the current one first.
  'cache.rejoin': { placement: 'target', summary: "The old primary's cache follows the current primary" },
  'reconcile.handoff': { placement: 'control', summary: 'Hand diverged writes over to reconciliation' },
  // Reconciliation (runbooks/reconcile.yaml): source = the old primary, target = the new one.
  'reconcile.preserve': { placement: 'source', summary: 'Keep the old primary read-only on its own timeline' },
  'reconcile.classify': { placement: 'target', summary: 'Read both journals over the divergence window and classify' },
  'reconcile.apply': {
    placement: 'target',
    irreversible: 're-applied transactions stay booked; a wrong one is corrected by a new transaction, never deleted',
    summary: 'Apply what is safe in one transaction and open cases for the rest',
  },
  'reconcile.verify': { placement: 'target', summary: 'Checksum both sides outside the window (key-range bisection)' },
  'reconcile.report': { placement: 'target', summary: 'Record the reconciliation: counts per class, applied, cases' },
  // Failback (runbooks/failback.yaml): source = the current primary, target = the old one.
  'failback.checkCases': {
    placement: 'source',
    summary: 'Refuse while reconciliation has not read the old primary or cases are open',
  },
  'failback.rejoinTarget': {
    placement: 'target',
    summary: 'Bring the old primary back as a standby of the current one',
  },
  'traffic.restore': {
    placement: 'target',
    compensate: 'traffic.restore',
    summary: 'Restore traffic to the records recorded before the failover',
  },
  // Drain and undrain (runbooks/drain.yaml, runbooks/undrain.yaml): RunInput.region is the region
  // drained; the Route 53 calls run on a region that stays in service (workflows/drain-actions.ts).
  'traffic.drain': {
    placement: 'control',
    compensate: 'traffic.restore',
    summary: "Move the region's traffic to the regions that stay in service",
  },
  'traffic.undrain': {
    placement: 'control',
    compensate: 'traffic.restore',
    summary: 'Restore the records exactly as they were before the drain',
  },
  'traffic.verify': { placement: 'control', summary: 'Read the records back and check them against what the run set' },
  // Application steps (workflows/http-step.ts): the step's own `placement` says where it runs, and
  // its parameters (src/contract/runbook/params.ts) what it calls.
  'http.call': { placement: 'target', summary: "Call an application endpoint (webhook) with the run's values" },
} as const satisfies Record<string, ActionSpec>;

export type ActionName = keyof typeof ACTIONS;

/** A step from a plugin named in the service config (src/plugins/, docs/plugins.md). */
export type CustomAction = `custom.${string}`;
export const CUSTOM_PREFIX = 'custom.';
export function isCustomAction(action: string): action is CustomAction {
  return action.startsWith(CUSTOM_PREFIX);
}

/**
 * Where a step with a placement of its own (http.call, plugin steps) runs: the run's source, its
 * target, every region of the service at once, or a control worker (the region-independent one).
 */
export const STEP_PLACEMENTS = ['source', 'target', 'every', 'control'] as const;
export type StepPlacement = (typeof STEP_PLACEMENTS)[number];

/** What a plugin step declares, carried in the run's input (RunbookDoc.plugins): workflow code cannot load the plugin. */
export interface PluginStepSpec {
  placement: StepPlacement;
  summary: string;
  /** The plugin has a compensation activity (`custom.<name>.compensate`). */
  compensates: boolean;
  irreversible?: string;
}

/**
 * Conditions a step may be gated on. A fixed vocabulary rather than expressions: a runbook is
 * data and must not be able to run code.
 */
export const CONDITIONS = [
  'planned',
  'unplanned',
  'fenced',
  'not-fenced',
  'approval-required',
  'other-standbys',
  'cache',
] as const;
export type Condition = (typeof CONDITIONS)[number];
