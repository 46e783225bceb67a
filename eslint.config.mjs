// Guard rails for the layout: workflow code and what it imports stay deterministic (no Node, no
// I/O, activity types only), and nothing below the entry points reaches up into them.
import { builtinModules } from 'node:module';
import tseslint from 'typescript-eslint';

const NODE_BUILTINS = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

/** Workflow code runs in Temporal's sandbox and is replayed: no Node, no I/O, no SDK parts that do I/O. */
const DETERMINISTIC = {
  paths: [
    ...NODE_BUILTINS.map((name) => ({ name, message: 'workflow code is replayed in a sandbox: no Node built-ins (do it in an activity)' })),
    { name: '@temporalio/client', message: 'workflow code talks to Temporal through @temporalio/workflow only' },
    { name: '@temporalio/worker', message: 'workflow code talks to Temporal through @temporalio/workflow only' },
    { name: '@temporalio/activity', message: 'workflow code talks to Temporal through @temporalio/workflow only' },
    { name: 'pg', message: 'workflow code does no I/O: query databases from an activity' },
  ],
  patterns: [
    {
      group: ['**/activities', '**/activities/*', '**/activities/**', '!**/activities/types'],
      allowTypeImports: true,
      message: 'workflow code imports activity types only (proxyActivities), never their implementation',
    },
    { group: ['@aws-sdk/*', '@slack/*'], message: 'workflow code does no I/O: call AWS and Slack from activities' },
  ],
};

/** Entry points (the CLI, the demo, the local stack, the Slack bot, the intake server) import the rest, never the other way round. */
const ENTRY_POINTS = {
  patterns: [
    {
      group: ['**/src/cli/**', '**/src/demo/**', '**/src/stack/**', '**/src/slack/**', '../cli/**', '../demo/**', '../stack/**', '../slack/**'],
      message: 'entry points (cli, demo, stack, slack) import the contract and the libraries, never the other way round',
    },
  ],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.regionshift/**', 'test/fixtures/**'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      'no-debugger': 'error',
      'no-dupe-keys': 'error',
      'no-unreachable': 'error',
      'no-self-compare': 'error',
      'no-unsafe-finally': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // What workflow code imports. The runbook loader reads files for the CLI and is not part of it;
    // the guardian's types still live beside the intake (issue 16 moves them).
    files: [
      'workflows/**/*.ts', 'src/runbook/**/*.ts', 'src/policy/**/*.ts', 'src/traffic/**/*.ts', 'src/reconcile/**/*.ts',
      'src/approvals/message.ts', 'src/intake/types.ts', 'src/intake/ids.ts', 'src/intake/health-verdict.ts',
      // Bundled with the workflows as interceptors (workers/bundle.ts).
      'src/metrics/workflow-interceptors.ts', 'src/metrics/run-summary.ts',
    ],
    ignores: ['src/runbook/load.ts'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': ['error', { paths: DETERMINISTIC.paths, patterns: [...DETERMINISTIC.patterns, ...ENTRY_POINTS.patterns] }],
    },
  },
  {
    files: ['activities/**/*.ts', 'workers/**/*.ts', 'src/config/**/*.ts', 'src/postgres/**/*.ts', 'src/codec/**/*.ts', 'src/runs/**/*.ts', 'src/approvals/**/*.ts', 'src/runbook/load.ts', 'src/metrics/**/*.ts', 'src/tracing/**/*.ts'],
    ignores: ['src/approvals/message.ts', 'src/metrics/workflow-interceptors.ts', 'src/metrics/run-summary.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', ENTRY_POINTS] },
  },
);
