// Everything the control worker registers. Workflow code only: no Node APIs, no I/O.
export { runbook, fenceWhenReachable, followWhenReachable } from './runbook';
export { guardian, healthWatcher } from './guardian';
export { reconcileCases } from './reconcile-actions';
export { evacuate } from './evacuate';
export { readiness } from './readiness';
export { warmUp } from './warm-up';
