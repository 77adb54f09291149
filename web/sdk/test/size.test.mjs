// The SDK's size as an app ships it: each published build (dist/esm, dist/cjs) bundled and
// minified with the pinned esbuild (root devDependency), target ES2017, in its own format —
// what a mini-program's upload or a web app's bundler does with it. Target: at most 20 KB
// (20,480 bytes) minified, for each build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(import.meta.url);
const esbuild = require('esbuild');
const BUDGET = 20 * 1024;

for (const [entry, format] of [['dist/esm/index.js', 'esm'], ['dist/cjs/index.js', 'cjs']]) {
  test(`${format}: at most ${BUDGET} bytes minified`, () => {
    const r = esbuild.buildSync({ entryPoints: [path.join(here, '..', entry)], bundle: true, minify: true, format, target: 'es2017', write: false, logLevel: 'silent' });
    const code = r.outputFiles[0].contents;
    const gz = zlib.gzipSync(code, { level: 9 }).length;
    console.log(`# ${format}: ${code.length} bytes minified, ${gz} gzipped`);
    assert.ok(code.length <= BUDGET, `${format} minified ${code.length} bytes > ${BUDGET}`);
  });
}
