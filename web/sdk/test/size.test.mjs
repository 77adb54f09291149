// The SDK's size, minified and bundled with esbuild (root devDependency): target <= 20 KB.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(import.meta.url);
let esbuild = null;
try { esbuild = require('esbuild'); } catch (e) { /* not installed */ }

test('minified size', { skip: !esbuild && 'no esbuild' }, () => {
  for (const [entry, format] of [['dist/esm/index.js', 'esm'], ['dist/cjs/index.js', 'cjs']]) {
    const r = esbuild.buildSync({ entryPoints: [path.join(here, '..', entry)], bundle: true, minify: true, format, target: 'es2017', write: false, logLevel: 'silent' });
    const code = r.outputFiles[0].contents;
    const gz = zlib.gzipSync(code, { level: 9 }).length;
    console.log(`# ${format}: ${code.length} bytes minified, ${gz} gzipped`);
    const budget = format === "esm" ? 20 * 1024 : 22 * 1024; // target 20 KB; the CJS build pays ~1 KB of CommonJS glue
    assert.ok(code.length <= budget, `${format} minified ${code.length} bytes > ${budget}`);
  }
});
