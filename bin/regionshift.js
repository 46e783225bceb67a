#!/usr/bin/env node
'use strict';
// Thin launcher: the CLI is TypeScript compiled to dist/ by `npm install` (prepare) or `npm run build`.
const path = require('node:path');
const fs = require('node:fs');
const main = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
if (!fs.existsSync(main)) {
  console.error('regionshift: not built yet. Run `npm install` (or `npm run build`) in ' + path.join(__dirname, '..'));
  process.exit(2);
}
require(main).main(process.argv.slice(2)).then(
  (code) => process.exit(code ?? 0),
  (err) => {
    console.error('regionshift: ' + (err && err.message ? err.message : String(err)));
    process.exit(1);
  },
);
