// Hosted SQL in the browser: a real PostgreSQL database with a least-privilege role, forced
// row-level security and a policy on the caller's attribute → register it as a backend from the
// console (connection test) → install the setup script it shows → rename it and enter its
// connection string again → test the connection → define
// a SQL tool, see the backend's refusal of a bad statement at the SQL field, fix it, see the
// learned schemas and the inspection report (protected table, role that cannot bypass RLS),
// approve it; mark a table a second tool reads as reference data →
// define the caller attribute the policy reads. Every page passes axe-core at 1280 and 390 px;
// screenshots go to docs/console/.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { api, createOrg, launchBrowser, newUser, signUpAndLogIn, startStack, visit } from "./harness.mjs";

const PG = process.env.CONSOLE_E2E_PG_HOST ?? "127.0.0.1";
const PG_PORT = process.env.CONSOLE_E2E_PG_PORT ?? "5432";
const tag = randomBytes(5).toString("hex");
const DB = `console_sql_${tag}`;
const ROLE = `console_tools_${tag}`;
const OWNER = `console_owner_${tag}`;
const PASSWORD = `pw-${tag}`;

/** Runs SQL as the superuser (trust auth) on `db`; returns psql's output. */
function psql(db, sql) {
  return execFileSync("psql", ["-h", PG, "-p", PG_PORT, "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atq"], {
    input: sql,
    encoding: "utf8",
  });
}

let stack;
let browser;

before(async () => {
  psql("postgres", `CREATE DATABASE ${DB};`);
  psql("postgres", `CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD}' NOBYPASSRLS NOINHERIT;`);
  stack = await startStack();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await stack?.stop();
  psql("postgres", `DROP DATABASE IF EXISTS ${DB} WITH (FORCE); DROP ROLE IF EXISTS ${ROLE}; DROP ROLE IF EXISTS ${OWNER};`);
});

test("an admin registers a PostgreSQL backend, sees its inspection report and defines a SQL tool", async () => {
  const owner = await newUser(browser, stack, "owner");
  const { page } = owner;
  await signUpAndLogIn(owner, stack, { email: "owner@shop.example", name: "Olive Owner" });
  await createOrg(owner, { name: "Shop", slug: "shop" });

  // The backends page, empty.
  await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "SQL backends" }).click();
  await page.getByRole("heading", { name: "No backends yet" }).waitFor();
  await visit(page, "backends (empty)", { shot: "backends-empty" });

  // Register: the connection string is write-only; the test runs at once (not ready yet: the
  // gatehouse schema is not installed).
  await page.getByRole("button", { name: "Register a backend" }).click();
  const form = page.getByRole("form", { name: "Register a backend" });
  await form.getByLabel("Name").fill("Shop database");
  await form.getByLabel("Slug").fill("shop");
  await form.getByLabel("Connection string").fill(`postgres://${ROLE}:${PASSWORD}@${PG}:${PG_PORT}/${DB}`);
  assert.equal(await form.getByLabel("Connection string").getAttribute("type"), "password");
  await form.getByLabel("TLS mode").selectOption("verify_full");
  await form.getByLabel("CA certificate (PEM)").waitFor();
  await visit(page, "register a backend", { shot: "backend-register" });
  await form.getByLabel("TLS mode").selectOption("disable");
  assert.equal(await form.getByLabel("CA certificate (PEM)").count(), 0);
  await form.getByLabel("Owner role (optional)").fill(OWNER);
  await form.getByRole("button", { name: "Register and test connection" }).click();
  await page.getByRole("heading", { name: "Shop database", level: 1 }).waitFor();
  await page.getByText(`${PG}:${PG_PORT}/${DB}`).waitFor();
  assert.equal(await page.getByText(PASSWORD).count(), 0, "the page shows no credentials");
  await page.getByText("not ready").waitFor();
  const backendId = new URL(page.url()).pathname.split("/").pop();

  // The setup script the page shows, run as the superuser; then the schema and its policy.
  await page.getByRole("button", { name: "Show the setup script" }).click();
  const script = await page.getByLabel("Setup SQL", { exact: true }).textContent();
  assert.match(script, /gatehouse/);
  psql(DB, script);
  psql(
    DB,
    `CREATE TABLE orders (id int PRIMARY KEY, customer_id text NOT NULL, total numeric(10,2) NOT NULL);
     ALTER TABLE orders ENABLE ROW LEVEL SECURITY; ALTER TABLE orders FORCE ROW LEVEL SECURITY;
     CREATE POLICY orders_by_customer ON orders FOR ALL TO PUBLIC
       USING (customer_id = (SELECT gatehouse.claim('customer_id')))
       WITH CHECK (customer_id = (SELECT gatehouse.claim('customer_id')));
     CREATE TABLE products (sku text PRIMARY KEY, title text NOT NULL);
     GRANT SELECT ON orders, products TO ${ROLE};`,
  );
  // The connection settings change in place: a new name, the connection string entered again.
  await page.getByRole("button", { name: "Change", exact: true }).click();
  const edit = page.getByRole("form", { name: "Change the connection" });
  await edit.getByLabel("Name", { exact: true }).fill("Shop orders");
  await edit.getByLabel("New connection string").fill(`postgres://${ROLE}:${PASSWORD}@${PG}:${PG_PORT}/${DB}`);
  await edit.getByRole("button", { name: "Save connection" }).click();
  await page.getByRole("heading", { name: "Shop orders", level: 1 }).waitFor();
  await edit.waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Test connection" }).click();
  await page.getByText(/^Ready\./).waitFor();
  await page.getByText("cannot bypass row-level security").first().waitFor();
  await page.getByRole("heading", { name: "No SQL tools yet" }).waitFor();
  await visit(page, "backend (no tools)", { shot: "backend-detail" });

  // A SQL tool: a second statement is refused, at the SQL field.
  await page.getByRole("link", { name: "New SQL tool" }).click();
  const tool = page.getByRole("form", { name: "SQL tool" });
  await tool.getByLabel("Name", { exact: true }).fill("orders_over");
  await tool.getByLabel("Description", { exact: true }).fill("The caller's orders at or above a total.");
  await tool.getByLabel("SQL statement").fill("SELECT id, total FROM orders WHERE total >= :min_total; DELETE FROM orders");
  await tool.getByLabel("Parameter descriptions").fill("min_total: Smallest total to include");
  const refused = owner.expectStatus(400);
  await tool.getByRole("button", { name: "Validate and save" }).click();
  const sqlField = tool.getByLabel("SQL statement");
  await page.locator(".field-invalid .field-error").waitFor();
  assert.equal(await sqlField.getAttribute("aria-invalid"), "true", "the error is at the SQL field");
  const message = await page.locator(".field-invalid .field-error").textContent();
  assert.ok(message.length > 0);
  await visit(page, "SQL tool editor (validation error)", { shot: "sqltool-error" });
  await refused();

  // Fixed: saved, with the schemas learned from the backend's types and the inspection.
  await sqlField.fill("SELECT id, total FROM orders WHERE total >= :min_total ORDER BY id");
  await tool.getByRole("button", { name: "Validate and save" }).click();
  await page.getByRole("heading", { name: "orders_over", level: 1 }).waitFor();
  await page.getByText("Exposed as shop__orders_over.").waitFor();
  const input = JSON.parse(await page.getByLabel("Input schema").textContent());
  assert.ok(input.properties?.min_total, "the input schema has the parameter");
  assert.equal(input.properties.min_total.description, "Smallest total to include");
  const output = await page.getByLabel("Output schema").textContent();
  assert.match(output, /"total"/);
  await page.getByText("pending").first().waitFor();
  const report = page.getByRole("region", { name: "Relations the statement touches" });
  await report.getByText("public.orders").waitFor();
  await report.getByText("protected", { exact: true }).waitFor();
  await page.getByRole("button", { name: "Inspect again" }).click();
  await page.getByText("Inspected now: nothing blocks publication.").waitFor();
  await visit(page, "SQL tool", { shot: "sqltool" });
  // Approval runs the publication gate (the table is protected): the tool is published.
  await page.getByRole("button", { name: "Approve and publish" }).click();
  await page.getByText("Approved: the tool is published").waitFor();
  await page.getByText("approved", { exact: true }).first().waitFor();
  const toolId = new URL(page.url()).pathname.split("/").pop();
  const published = await api(owner, "GET", `/api/v1/orgs/shop/backends/${backendId}/tools/${toolId}`);
  assert.equal(published.body.status, "approved");

  // A tool reading an unprotected table: the report says why; marking it reference data (after
  // a confirmation) is what lets it through.
  await page.getByRole("link", { name: "← Backend" }).click();
  await page.getByRole("link", { name: "New SQL tool" }).click();
  await tool.getByLabel("Name", { exact: true }).fill("product_titles");
  await tool.getByLabel("Description", { exact: true }).fill("Product titles.");
  await tool.getByLabel("SQL statement").fill("SELECT sku, title FROM products ORDER BY sku");
  await tool.getByRole("button", { name: "Validate and save" }).click();
  await page.getByRole("heading", { name: "product_titles", level: 1 }).waitFor();
  await page.getByRole("link", { name: "← Backend" }).click();
  const products = page.getByRole("article", { name: "Tool product_titles" });
  await products.getByText("unprotected").waitFor();
  await products.getByRole("button", { name: "Mark public.products as reference data" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByRole("button", { name: "Mark as reference data" }).click();
  await dialog.waitFor({ state: "detached" });
  await products.getByText("reference data", { exact: true }).waitFor();
  const refs = await api(owner, "GET", `/api/v1/orgs/shop/backends/${backendId}/reference-tables`);
  assert.deepEqual(refs.body, [{ schema: "public", table: "products" }]);
  const orders = page.getByRole("article", { name: "Tool orders_over" });
  await orders.getByText("protected", { exact: true }).waitFor();
  await visit(page, "backend with tools", { shot: "backend-inspection" });

  // The backends list.
  await page.getByRole("link", { name: "← SQL backends" }).click();
  await page.getByRole("link", { name: "Shop orders" }).waitFor();
  await visit(page, "backends", { shot: "backends" });

  // The attribute the policy reads, and the owner's value of it.
  await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Caller attributes" }).click();
  await page.getByRole("heading", { name: "No attributes yet" }).waitFor();
  await page.getByLabel("Attribute name").fill("customer_id");
  await page.getByLabel("Description").fill("The customer this caller acts for");
  await page.getByRole("button", { name: "Define attribute" }).click();
  await page.getByRole("cell", { name: "customer_id", exact: true }).waitFor();
  await page.getByLabel("Caller").selectOption({ label: "Olive Owner (member)" });
  await page.getByLabel("customer_id", { exact: true }).fill("c-17");
  await page.getByRole("button", { name: "Save values" }).click();
  await page.getByText("Saved; the dataplanes apply it within a second.").waitFor();
  const me = await api(owner, "GET", "/api/v1/orgs/shop/members");
  const mine = await api(owner, "GET", `/api/v1/orgs/shop/members/${me.body[0].user_id}/attributes`);
  assert.deepEqual(mine.body, { attributes: { customer_id: "c-17" } });
  await visit(page, "caller attributes", { shot: "attributes" });

  owner.assertNoErrors();
});
