// The console's browser-test harness: a real Gatehouse stack (the `gatehouse up` binary with a
// private PostgreSQL cluster in a temporary directory), a real SMTP server whose mail the tests
// read, and headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, with an
// axe-core scan, console-error capture and screenshots at 1280 and 390 px. See e2e/README.md.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import { SMTPServer } from "smtp-server";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../..");
const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** The two widths every screenshot is taken at. */
export const WIDTHS = { desktop: 1280, phone: 390 };
/** Where screenshots go (committed, linked from the README). */
export const SCREENSHOT_DIR = process.env.CONSOLE_SCREENSHOTS ?? join(repoRoot, "docs/console");

async function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on("error", fail);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- mail -------------------------------------------------------------------------------------

/** One received message, with its decoded text part. */
export class Mail {
  constructor(envelope, raw) {
    this.to = envelope.rcptTo.map((r) => r.address.toLowerCase());
    this.raw = raw;
    this.subject = header(raw, "subject") ?? "";
    this.text = textPart(raw);
  }
  /** The first http(s) URL in the text that contains `needle`. */
  link(needle = "") {
    const urls = this.text.match(/https?:\/\/[^\s<>"]+/g) ?? [];
    const url = urls.find((u) => u.includes(needle));
    assert.ok(url, `no link containing ${JSON.stringify(needle)} in mail "${this.subject}":\n${this.text}`);
    return url.replace(/[.,)]+$/, "");
  }
}

function header(raw, name) {
  const head = raw.split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]/g, " ");
  const line = head.split(/\r?\n/).find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line?.slice(name.length + 1).trim();
}

function textPart(raw) {
  const text = raw.replace(/\r\n/g, "\n");
  const sections = text.split("\n--");
  for (const section of sections.length > 1 ? sections : [text]) {
    const split = section.indexOf("\n\n");
    if (split < 0) continue;
    const head = section.slice(0, split).toLowerCase();
    if (!head.includes("content-type: text/plain")) continue;
    const body = section.slice(split + 2);
    if (head.includes("quoted-printable")) {
      return body
        .replace(/=\n/g, "")
        .replace(/=([0-9A-F]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
    }
    if (head.includes("base64")) return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
    return body;
  }
  return "";
}

/** A real SMTP server on a free loopback port; tests wait for the mail the platform sends. */
export class MailBox {
  #mails = [];
  #waiters = new Set();
  static async start() {
    const box = new MailBox();
    box.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData(stream, session, callback) {
        const chunks = [];
        stream.on("data", (c) => chunks.push(c));
        stream.on("end", () => {
          box.#mails.push(new Mail(session.envelope, Buffer.concat(chunks).toString("utf8")));
          box.#waiters.forEach((w) => w());
          callback();
        });
      },
    });
    box.port = await freePort();
    await new Promise((ok) => box.server.listen(box.port, "127.0.0.1", ok));
    return box;
  }
  get smtpUrl() {
    return `smtp://127.0.0.1:${this.port}?tls=none`;
  }
  /** Every message received for `to`. */
  mailsTo(to) {
    return this.#mails.filter((m) => m.to.includes(to.toLowerCase()));
  }
  /** Waits (up to `timeoutMs`) for the `nth` (1-based) message to `to` whose subject matches. */
  async waitFor(to, { subject = /./, nth = 1, timeoutMs = 15_000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.mailsTo(to).filter((m) => subject.test(m.subject));
      if (found.length >= nth) return found[nth - 1];
      const left = deadline - Date.now();
      assert.ok(left > 0, `no mail #${nth} to ${to} matching ${subject} within ${timeoutMs} ms; got: ${this.mailsTo(to).map((m) => m.subject).join(", ")}`);
      await new Promise((ok) => {
        const wake = () => {
          this.#waiters.delete(wake);
          ok();
        };
        this.#waiters.add(wake);
        setTimeout(wake, Math.min(left, 250));
      });
    }
  }
  close() {
    return new Promise((ok) => this.server.close(ok));
  }
}

// --- the stack ----------------------------------------------------------------------------------

/** The gatehouse binary to run: $CONSOLE_E2E_GATEHOUSE, else the debug build in $CARGO_TARGET_DIR. */
export function gatehouseBinary() {
  if (process.env.CONSOLE_E2E_GATEHOUSE) return process.env.CONSOLE_E2E_GATEHOUSE;
  const target = process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target");
  return join(target, "debug/gatehouse");
}

/**
 * Starts `gatehouse up` (control API with the console, dataplane, usage worker, private
 * PostgreSQL) on free ports, sending mail to a fresh MailBox. Returns
 * { url, dataplaneUrl, mail, dataDir, logs(), stop() }.
 */
export async function startStack({ seedDemo = false } = {}) {
  const mail = await MailBox.start();
  const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-console-e2e-"));
  const [api, apiInternal, dp, dpInternal, worker] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const url = `http://127.0.0.1:${api}`;
  const dataplaneUrl = `http://127.0.0.1:${dp}`;
  const env = {
    ...process.env,
    GATEHOUSE_LOCAL__DATA_DIR: dataDir,
    GATEHOUSE_LOCAL__SEED_DEMO: String(seedDemo),
    GATEHOUSE_CONTROL_API__LISTEN: `127.0.0.1:${api}`,
    GATEHOUSE_CONTROL_API__INTERNAL_LISTEN: `127.0.0.1:${apiInternal}`,
    GATEHOUSE_CONTROL_API__PUBLIC_URL: url,
    GATEHOUSE_DATAPLANE__LISTEN: `127.0.0.1:${dp}`,
    GATEHOUSE_DATAPLANE__INTERNAL_LISTEN: `127.0.0.1:${dpInternal}`,
    GATEHOUSE_DATAPLANE__PUBLIC_URL: dataplaneUrl,
    GATEHOUSE_DATAPLANE__CONTROL_API_URL: `http://127.0.0.1:${apiInternal}`,
    GATEHOUSE_USAGE_WORKER__LISTEN: `127.0.0.1:${worker}`,
    GATEHOUSE_MAIL__SMTP_URL: mail.smtpUrl,
  };
  delete env.DATABASE_URL;
  delete env.GATEHOUSE_CONFIG;
  const child = spawn(gatehouseBinary(), ["up"], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise((ok) => child.on("exit", (code, signal) => ok({ code, signal })));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const done = await Promise.race([exited, sleep(300).then(() => null)]);
    if (done) throw new Error(`gatehouse up exited (${JSON.stringify(done)}):\n${output}`);
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`gatehouse up was not ready within 120 s:\n${output}`);
    }
  }
  return {
    url,
    dataplaneUrl,
    mail,
    dataDir,
    logs: () => output,
    async stop() {
      child.kill("SIGINT");
      const stopped = await Promise.race([exited, sleep(20_000).then(() => null)]);
      if (!stopped) child.kill("SIGKILL");
      await mail.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// --- the browser --------------------------------------------------------------------------------

/** Headless Chromium: $CHROMIUM, else Debian's /usr/bin/chromium. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/**
 * A signed-out browser user with their own cookies. `user.page` is a Playwright page at
 * 1280 px; every console error, page error and failed same-origin request is recorded in
 * `user.errors` (tests end with `user.assertNoErrors()`).
 */
export async function newUser(browser, stack, name) {
  const context = await browser.newContext({ viewport: { width: WIDTHS.desktop, height: 900 }, baseURL: stack.url });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: stack.url });
  const page = await context.newPage();
  const errors = [];
  // Responses the test provokes on purpose (a wrong password, a refused action) are not errors;
  // a test lists the statuses it expects with `user.expectStatus(…)`.
  const expected = new Set();
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    // Chromium logs every non-2xx fetch as "Failed to load resource"; those are checked below.
    if (/Failed to load resource: the server responded with a status of (\d+)/.test(text)) return;
    errors.push(`console: ${text}`);
  });
  page.on("pageerror", (err) => errors.push(`page error: ${err.message}`));
  // Requests in flight, so a step can wait for the app's requests to settle (a single-page app
  // has no new "networkidle" after its first load).
  let inflight = 0;
  page.on("request", () => inflight++);
  page.on("requestfinished", () => inflight--);
  page.on("requestfailed", () => inflight--);
  const settled = async () => {
    for (let quiet = 0; quiet < 3; ) {
      await page.waitForTimeout(100);
      quiet = inflight <= 0 ? quiet + 1 : 0;
    }
  };
  page.on("response", (res) => {
    const status = res.status();
    if (status >= 400 && res.url().startsWith(stack.url) && !expected.has(status)) {
      // A signed-out check of the session is how the app learns it must show the login page.
      if (status === 401 && res.url().endsWith("/api/v1/session")) return;
      errors.push(`HTTP ${status} ${res.request().method()} ${res.url()}`);
    }
  });
  return {
    name,
    context,
    page,
    errors,
    /**
     * Allows responses with `status` until the returned function is awaited (which first lets
     * the requests in flight finish).
     */
    settled,
    expectStatus(status) {
      expected.add(status);
      return async () => {
        await settled();
        expected.delete(status);
      };
    },
    assertNoErrors() {
      assert.deepEqual(errors, [], `${name}: browser errors`);
    },
    close: () => context.close(),
  };
}

/**
 * Runs axe-core on the page as it is now; fails on any serious or critical violation. Returns
 * the violations of lower impact (for information).
 */
export async function checkA11y(page, label) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `${label}: serious or critical accessibility violations`);
  return result;
}

/** Screenshots of the page at both widths into docs/console/<name>-{1280,390}.png. */
export async function screenshots(page, name) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const original = page.viewportSize();
  for (const width of Object.values(WIDTHS)) {
    await page.setViewportSize({ width, height: width === WIDTHS.phone ? 844 : 900 });
    await page.waitForTimeout(100);
    await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize(original);
}

/**
 * Checks the page (axe), screenshots it when `shot` names it, and checks it does not scroll
 * sideways at 390 px. Call it on every page a test visits.
 */
export async function visit(page, label, { shot } = {}) {
  await page.waitForLoadState("networkidle");
  await page.locator('[role="status"] .spinner').first().waitFor({ state: "detached", timeout: 10_000 }).catch(() => {});
  await checkA11y(page, label);
  const original = page.viewportSize();
  await page.setViewportSize({ width: WIDTHS.phone, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `${label}: the page scrolls sideways at 390 px (${overflow} px)`);
  await checkA11y(page, `${label} at 390 px`);
  await page.setViewportSize(original);
  if (shot) await screenshots(page, shot);
}

// --- flows every test needs ---------------------------------------------------------------------

/** Signs up through the console, opens the verification link from the mail, logs in. */
export async function signUpAndLogIn(user, stack, { email, password = "correct horse battery staple", name = "Test User" }) {
  const { page } = user;
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "Check your email" }).waitFor();
  const mail = await stack.mail.waitFor(email, { subject: /verify/i });
  await page.goto(mail.link("/verify-email"));
  await page.getByText("Your email address is verified").waitFor();
  await logIn(user, { email, password });
}

/** Logs in with a password from the login page (already there, or opened). */
export async function logIn(user, { email, password = "correct horse battery staple" }) {
  const { page } = user;
  if (!new URL(page.url()).pathname.startsWith("/login")) await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in", exact: true }).click();
  await page.waitForURL((u) => !u.pathname.startsWith("/login"));
}

/** Creates an org from the console and waits for its overview. */
export async function createOrg(user, { name, slug }) {
  const { page } = user;
  await page.goto("/orgs/new");
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Slug").fill(slug);
  await page.getByRole("button", { name: "Create org" }).click();
  await page.waitForURL(`**/orgs/${slug}`);
  await page.getByRole("heading", { name, level: 1 }).waitFor();
}

/**
 * The REST API as `user` (their session cookie and CSRF token): for a test's set-up and checks
 * that need no page. `await api(user, "POST", "/api/v1/orgs", body)` returns { status, body }.
 */
export async function api(user, method, path, body) {
  const page = user.page;
  return page.evaluate(
    async ({ method, path, body }) => {
      const session = await fetch("/api/v1/session", { credentials: "include" });
      const csrf = session.ok ? (await session.json()).csrf_token : "";
      const res = await fetch(path, {
        method,
        credentials: "include",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON
      }
      return { status: res.status, body: parsed };
    },
    { method, path, body },
  );
}
