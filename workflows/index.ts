// Everything the control worker registers. Workflow code only: no Node APIs, no I/O.
export { runbook, fenceWhenReachable } from './runbook';
