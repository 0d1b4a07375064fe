// Fails when src/api/schema.d.ts is not what `npm run gen:api` makes from the committed
// services/control-api/openapi.json (regenerate with `npm run gen:api`).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

const spec = new URL("../../services/control-api/openapi.json", import.meta.url);
const committed = fileURLToPath(new URL("../src/api/schema.d.ts", import.meta.url));
const generated = astToString(await openapiTS(spec));
const header = readFileSync(committed, "utf8");
const strip = (s) => s.replace(/^\/\*\*[\s\S]*?\*\/\s*/, "").trim();
if (strip(header) !== strip(generated)) {
  console.error("web/src/api/schema.d.ts is stale: run `npm --prefix web run gen:api` and commit it.");
  process.exit(1);
}
console.log("web/src/api/schema.d.ts matches services/control-api/openapi.json");
