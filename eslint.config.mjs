// Guard rails for the layout (README, "How it is built"): workflow code and the contract stay
// deterministic (no Node, no I/O, activity types only), and imports run one way: entry points →
// presentation → libraries and activities → contract.
import { builtinModules } from 'node:module';
import tseslint from 'typescript-eslint';

const NODE_BUILTINS = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

/** Workflow code runs in Temporal's sandbox and is replayed: no Node, no I/O, no SDK parts that do I/O. */
const DETERMINISTIC = {
  paths: [
    ...NODE_BUILTINS.map((name) => ({
      name,
      message: 'workflow code is replayed in a sandbox: no Node built-ins (do it in an activity)',
    })),
    { name: '@temporalio/client', message: 'workflow code talks to Temporal through @temporalio/workflow only' },
    { name: '@temporalio/worker', message: 'workflow code talks to Temporal through @temporalio/workflow only' },
    { name: '@temporalio/activity', message: 'workflow code talks to Temporal through @temporalio/workflow only' },
    { name: 'pg', message: 'workflow code does no I/O: query databases from an activity' },
  ],
  patterns: [
    {
      group: ['**/activities', '**/activities/*', '**/activities/**'],
      allowTypeImports: true,
      message: 'workflow code imports activity types only (proxyActivities), never their implementation',
    },
    { group: ['@aws-sdk/*', '@slack/*'], message: 'workflow code does no I/O: call AWS and Slack from activities' },
  ],
};

/** Module specifiers that reach into one of `dirs` under src/, from anywhere in the repo. */
function into(dirs) {
  return dirs.flatMap((d) => [`**/src/${d}`, `**/src/${d}/**`, `../${d}`, `../${d}/**`, `../../${d}`, `../../${d}/**`]);
}

/** Entry points (the CLI, the Slack bot, the intake server, the local stack, the demo, build scripts) import the rest, never the other way round. */
const ENTRY_POINTS = ['cli', 'slack', 'intake', 'stack', 'demo', 'build'];
const NO_ENTRY_POINTS = {
  group: into(ENTRY_POINTS),
  message:
    'entry points (cli, slack, intake, stack, demo, build) import the contract, the libraries and the presentation, never the other way round',
};
const NO_PRESENTATION = {
  group: into(['present']),
  message: 'presentation (src/present) is for the entry points: the contract and the libraries do not print',
};
/** The contract is the deterministic core: it may name library types (the config's shape), never run library code. */
const LIBRARY_TYPES_ONLY = {
  group: into(['lib']),
  allowTypeImports: true,
  message: 'the contract (src/contract) is replayed with workflow code: library types only, never library code',
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
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
    },
  },
  {
    // Workflow code and the contract it shares with the activities.
    files: ['workflows/**/*.ts', 'src/contract/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: DETERMINISTIC.paths,
          patterns: [...DETERMINISTIC.patterns, NO_ENTRY_POINTS, NO_PRESENTATION, LIBRARY_TYPES_ONLY],
        },
      ],
    },
  },
  {
    // Libraries and what the workers run.
    files: ['src/lib/**/*.ts', 'activities/**/*.ts', 'workers/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: [NO_ENTRY_POINTS, NO_PRESENTATION] }] },
  },
  {
    files: ['src/present/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: [NO_ENTRY_POINTS] }] },
  },
);
