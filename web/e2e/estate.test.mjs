// A team's MCP estate in the browser: register a real MCP server (the official TypeScript SDK's
// server from tests/clients) → approve its tools after the side-by-side review → define a scope
// and grant the tool → create an endpoint → copy the Claude Code line → call the tool from the
// playground (as the signed-in user, through the real dataplane) → see the call in the audit log
// (and a tampered entry found by verifying a range) and the usage chart → create and revoke a service token. A user of another org, signed in at
// the same time, sees none of it on any page. Every page passes axe-core; screenshots go to
// docs/console/.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { api, createOrg, launchBrowser, newUser, repoRoot, signUpAndLogIn, startStack, visit } from "./harness.mjs";

let stack;
let browser;
let mcp;
let mcpUrl;

/** The SDK's Streamable HTTP server (tests/clients, installed by tests/clients/setup.sh). */
async function startMcpServer() {
  const child = spawn("node", [join(repoRoot, "tests/clients/bridging/ts-server.mjs"), "streamable"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise((ok, fail) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening (\d+)/);
      if (m) ok(Number(m[1]));
    });
    child.on("exit", (code) => fail(new Error(`the MCP server exited (${code}); run tests/clients/setup.sh`)));
  });
  return { child, url: `http://127.0.0.1:${port}/mcp` };
}

before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
  const server = await startMcpServer();
  mcp = server.child;
  mcpUrl = server.url;
});
after(async () => {
  mcp?.kill();
  await browser?.close();
  await stack?.stop();
});

const ALICE = "alice@estate.example";
const BOB = "bob@other.example";
const TOOL = "support__test_simple_text";

/**
 * Edits one audit entry's details in the stack's private PostgreSQL (its unix socket under the
 * data directory), as only someone with the schema owner's rights could: a tampered trail.
 */
function tamperAuditEntry(orgSlug, seq) {
  const update = `UPDATE audit_events SET details = '{"tampered": true}'
     WHERE org_id = (SELECT id FROM orgs WHERE slug = '${orgSlug}') AND seq = ${seq}`;
  const out = execFileSync(
    "psql",
    [
      ...["-v", "ON_ERROR_STOP=1", "-h", join(stack.dataDir, "postgres/run"), "-U", "gatehouse_owner", "-d", "gatehouse"],
      ...["-c", "ALTER TABLE audit_events DISABLE TRIGGER USER", "-c", update, "-c", "ALTER TABLE audit_events ENABLE TRIGGER USER"],
    ],
    { encoding: "utf8" },
  );
  assert.match(out, /UPDATE 1/);
}

/** Retries `probe` (which returns a truthy value when done) for up to `ms`. */
async function eventually(ms, probe, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => false);
    if (v) return v;
    assert.ok(Date.now() < deadline, `not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test("register a server, approve, grant, serve, call from the playground, audit, usage, tokens; another org sees none of it", async () => {
  const alice = await newUser(browser, stack, "alice");
  const bob = await newUser(browser, stack, "bob");
  const { page } = alice;
  await signUpAndLogIn(alice, stack, { email: ALICE, name: "Alice Estate" });
  await createOrg(alice, { name: "Estate Co", slug: "estate" });
  await signUpAndLogIn(bob, stack, { email: BOB, name: "Bob Other" });
  await createOrg(bob, { name: "Other Inc", slug: "other" });

  // Servers: empty, then register with a connection test.
  await page.getByRole("link", { name: "Servers" }).first().click();
  await page.getByRole("heading", { name: "No servers yet" }).waitFor();
  await visit(page, "servers (empty)");
  await page.getByRole("button", { name: "Register a server" }).click();
  await page.getByLabel("Name").fill("Support tools");
  await page.getByLabel("Slug").fill("support");
  await page.getByLabel("MCP URL").fill(mcpUrl);
  await page.getByRole("button", { name: "Register and test connection" }).click();
  await page.getByText(/Connected: the server lists \d+ tools/).waitFor();
  await page.getByRole("cell", { name: "Support tools" }).waitFor();
  await visit(page, "servers", { shot: "servers" });

  // Review and approve the tool.
  await page.getByRole("link", { name: /Review the tools of Support tools/ }).click();
  await page.getByRole("heading", { name: "Support tools", level: 1 }).waitFor();
  await page.getByText("synced").first().waitFor();
  await visit(page, "server", { shot: "server" });
  await page.getByRole("button", { name: "Review test_simple_text" }).click();
  await page.getByRole("region", { name: "Definition diff" }).waitFor();
  await page.getByText("A new tool: nothing is approved yet").waitFor();
  await visit(page, "tool review", { shot: "tool-review" });
  await page.getByRole("button", { name: "Approve this definition" }).click();
  await page.getByRole("row", { name: new RegExp(`${TOOL}.*approved`) }).waitFor();

  // A scope granting the tool, through the matrix.
  await page.getByRole("link", { name: "Scopes" }).first().click();
  await page.getByRole("heading", { name: "No scopes yet" }).waitFor();
  await page.getByLabel("Scope name").fill("support:read");
  await page.getByLabel("Description").fill("Read support data");
  await page.getByRole("button", { name: "Define scope" }).click();
  const cell = page.getByLabel(`support:read grants ${TOOL}`);
  await cell.check();
  await page.getByRole("button", { name: /Save grants \(1 scope\)/ }).click();
  await page.getByText("Saved 1 scope(s).").waitFor();
  assert.ok(await cell.isChecked());
  await visit(page, "scopes", { shot: "scopes" });

  // An endpoint over the server; the Claude Code line is copied.
  await page.getByRole("link", { name: "Endpoints" }).first().click();
  await page.getByRole("heading", { name: "No endpoints yet" }).waitFor();
  await page.getByRole("button", { name: "Create an endpoint" }).click();
  await page.getByLabel("Name").fill("Support");
  await page.getByLabel("Slug").fill("support");
  await page.getByLabel(/Support tools/).check();
  await page.getByRole("button", { name: "Create endpoint" }).click();
  await page.getByRole("heading", { name: "Support", level: 1 }).waitFor();
  const endpointUrl = `${stack.dataplaneUrl}/estate/support/mcp`;
  assert.equal(await page.getByTestId("endpoint-url").innerText(), endpointUrl);
  await page.getByRole("button", { name: "Copy command" }).click();
  await page.getByRole("button", { name: "Copied" }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, `claude mcp add --transport http estate-support ${endpointUrl}`);
  await visit(page, "endpoint", { shot: "endpoint" });

  // The playground: list (once the dataplane serves the endpoint), choose, call.
  await eventually(
    10_000,
    async () => {
      await page.getByRole("button", { name: /List my tools/ }).click();
      await page.waitForResponse((r) => r.url().endsWith("/playground"));
      return (await page.getByLabel("Tool", { exact: true }).count()) > 0;
    },
    "the playground lists the tool",
  );
  await page.getByLabel("Tool", { exact: true }).selectOption(TOOL);
  await page.getByText("This tool takes no arguments.").waitFor();
  await page.getByRole("button", { name: `Call ${TOOL}` }).click();
  await page.getByTestId("playground-response").getByText("This is a simple text response for testing.").waitFor();
  assert.match(await page.getByTestId("playground-request").innerText(), /"method": "tools\/call"/);
  await visit(page, "playground", { shot: "playground" });

  // The call is in the audit log (live tail), and the chain verifies.
  await page.getByRole("link", { name: "Audit log" }).first().click();
  await page.getByRole("heading", { name: "Audit log", level: 1 }).waitFor();
  await page.getByLabel("Live tail").check();
  await page.getByRole("cell", { name: "tool.call" }).first().waitFor({ timeout: 20_000 });
  await page.getByRole("button", { name: "Verify integrity" }).click();
  await page.getByText(/The chain verifies/).waitFor();
  await page.getByLabel("Live tail").uncheck();
  await visit(page, "audit", { shot: "audit" });

  // Verifying a range: a reversed range is refused at its field; then entry #3 is edited in the
  // database behind Gatehouse's back (as the schema owner, append-only guard off), and only a
  // range holding it shows the broken link.
  const integrity = page.getByRole("form", { name: "Verify integrity" });
  const done400 = alice.expectStatus(400);
  await integrity.getByLabel("From entry #").fill("5");
  await integrity.getByLabel("To entry #").fill("2");
  await integrity.getByRole("button", { name: "Verify integrity" }).click();
  await integrity.locator(".field").filter({ has: page.getByLabel("To entry #") }).getByText(/less than from_seq/).waitFor();
  await done400();
  tamperAuditEntry("estate", 3);
  await integrity.getByLabel("From entry #").fill("4");
  await integrity.getByLabel("To entry #").fill("6");
  await integrity.getByRole("button", { name: "Verify integrity" }).click();
  await page.getByText(/The range verifies \(entries #4–#6, 3 entries\)/).waitFor();
  await integrity.getByLabel("From entry #").fill("2");
  await integrity.getByRole("button", { name: "Verify integrity" }).click();
  await page.getByTestId("first-broken").getByText("#3").waitFor();
  const brokenLink = page.getByRole("region", { name: "First broken link" });
  await brokenLink.getByRole("cell", { name: "3", exact: true }).waitFor();
  await brokenLink.getByRole("cell", { name: "2", exact: true }).waitFor();
  await visit(page, "audit with a broken link", { shot: "audit-broken-link" });

  // The call in the usage chart (the usage-worker writes rollups in batches).
  await page.getByRole("link", { name: "Usage" }).first().click();
  await eventually(
    30_000,
    async () => {
      await page.reload();
      const calls = await page.getByTestId("usage-calls").innerText({ timeout: 5_000 });
      return Number(calls.replace(/\D/g, "")) >= 1;
    },
    "usage shows the call",
  );
  await page.getByRole("img", { name: /Calls per endpoint, 1 series/ }).waitFor();
  await page.getByText("support", { exact: true }).first().waitFor();
  await visit(page, "usage", { shot: "usage" });

  // A service token: the secret is shown once, then revoked.
  await page.getByRole("link", { name: "Tokens" }).first().click();
  const tokenForm = page.getByRole("form", { name: "Create a service token" });
  await tokenForm.getByLabel("Name").fill("estate-robot");
  await tokenForm.getByLabel("Endpoint").selectOption({ label: "Support (support)" });
  await tokenForm.getByLabel("support:read").check();
  await tokenForm.getByRole("button", { name: "Create service token" }).click();
  const secret = await page.getByTestId("secret").innerText();
  assert.match(secret, /^ghs_[0-9a-f]{32}_/);
  await page.getByRole("button", { name: "Revoke estate-robot" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke token" }).click();
  await page.getByRole("row", { name: /estate-robot.*revoked/ }).waitFor();
  await visit(page, "tokens", { shot: "tokens" });

  // Bob, of another org, sees none of it: Estate's pages are "Not found", his own are empty.
  for (const path of ["servers", "scopes", "endpoints", "tokens", "audit", "usage"]) {
    await bob.page.goto(`/orgs/estate/${path}`);
    await bob.page.getByRole("heading", { name: "Not found" }).waitFor();
    const text = await bob.page.locator("body").innerText();
    for (const secretText of ["Support tools", TOOL, "support:read", "estate-robot", ALICE]) {
      assert.ok(!text.includes(secretText), `bob sees ${secretText} at /orgs/estate/${path}`);
    }
    await visit(bob.page, `bob at estate ${path}`);
    await bob.page.goto(`/orgs/other/${path}`);
    await bob.page.getByRole("heading", { level: 1 }).first().waitFor();
    await bob.page.waitForLoadState("networkidle");
    const own = await bob.page.locator("body").innerText();
    for (const secretText of ["Support tools", TOOL, "support:read", "estate-robot", ALICE]) {
      assert.ok(!own.includes(secretText), `bob sees ${secretText} at /orgs/other/${path}`);
    }
    await visit(bob.page, `bob at his own ${path}`);
  }
  const done404 = bob.expectStatus(404);
  for (const path of ["servers", "tools", "scopes", "endpoints", "service-tokens", "audit", "usage"]) {
    assert.equal((await api(bob, "GET", `/api/v1/orgs/estate/${path}`)).status, 404, path);
  }
  await done404();

  alice.assertNoErrors();
  bob.assertNoErrors();
});
