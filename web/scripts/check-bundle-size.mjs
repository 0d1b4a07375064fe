// Fails when the console's initial JavaScript (the entry script and the modules it preloads, as
// listed in dist/index.html) is over the budget, gzipped. Lazy-loaded pages do not count.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const BUDGET = 300 * 1024;
const dist = fileURLToPath(new URL("../dist/", import.meta.url));
const html = readFileSync(`${dist}index.html`, "utf8");
const scripts = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*rel="modulepreload"[^>]*\shref)="\/([^"]+\.js)"/g)].map((m) => m[1]);
if (scripts.length === 0) {
  console.error("no scripts found in dist/index.html");
  process.exit(1);
}
let total = 0;
for (const file of new Set(scripts)) {
  const size = gzipSync(readFileSync(dist + file), { level: 9 }).length;
  total += size;
  console.log(`  ${file}: ${(size / 1024).toFixed(1)} KB gzip`);
}
const verdict = total <= BUDGET ? "within" : "OVER";
console.log(`initial JavaScript: ${(total / 1024).toFixed(1)} KB gzip, ${verdict} the ${BUDGET / 1024} KB budget`);
if (total > BUDGET) process.exit(1);
