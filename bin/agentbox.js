#!/usr/bin/env node
// The bundled CLI starts faster (launch time is start-up time); dist/cli is the same code unbundled.
const { main } = await import('../dist/cli-bundle/main.js').catch(() => import('../dist/cli/main.js'));
process.exitCode = await main(process.argv);
