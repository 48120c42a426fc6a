// Builds dist/ct.min.js from src/ct.js and checks the size budget.
//
//   node build.mjs            write dist/ct.min.js
//   node build.mjs --out DIR  write DIR/ct.min.js instead (the up-to-date test)
//
// Exits non-zero when the minified file is over 3 KB gzipped: sites load this
// file, so the budget is checked on it, on every build.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
import { minify } from 'terser';

const GZIP_BUDGET = 3072; // bytes, gzip -9 of the minified file

const here = dirname(fileURLToPath(import.meta.url));
const outFlag = process.argv.indexOf('--out');
const outDir = outFlag > 0 ? process.argv[outFlag + 1] : join(here, 'dist');

const source = readFileSync(join(here, 'src', 'ct.js'), 'utf8');
const { code } = await minify(source, {
  ecma: 2020,
  compress: { passes: 3, unsafe_arrows: true },
  mangle: true,
  format: { ascii_only: true },
});

mkdirSync(outDir, { recursive: true });
const out = join(outDir, 'ct.min.js');
writeFileSync(out, code + '\n');

const bytes = Buffer.from(code + '\n');
const gzip = gzipSync(bytes, { level: 9 }).length;
const brotli = brotliCompressSync(bytes, {
  params: { [constants.BROTLI_PARAM_QUALITY]: 11 },
}).length;
console.log(`${out}: ${bytes.length} B, ${gzip} B gzip, ${brotli} B brotli ` +
  `(budget ${GZIP_BUDGET} B gzip)`);
if (gzip > GZIP_BUDGET) {
  console.error(`Expected at most ${GZIP_BUDGET} B gzipped, found ${gzip} B.`);
  process.exit(1);
}
