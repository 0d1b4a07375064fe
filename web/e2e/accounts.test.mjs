// Accounts and orgs in the browser: sign up → verification mail → create org → invite a second
// user who accepts by mail link (signing in on the way) → roles → the org's SSO provider (a real
// OpenID Connect provider; field errors at their fields), its email domains and a member's SSO
// login confirmed by mail; another org's user, signed in at the same time, sees none of it;
// session expiry sends you to login and back; an org deleted from its danger zone; forgot
// password → the mail → reset → log in with the new password. Every page passes axe-core and leaves no browser errors. Screenshots go to
// docs/console/.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { api, createOrg, launchBrowser, logIn, newUser, repoRoot, signUpAndLogIn, startStack, visit } from "./harness.mjs";

let stack;
let browser;
let idp;
before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
  idp = await startOidcProvider(`${stack.url}/api/v1/sso/callback`);
});
after(async () => {
  idp?.child.stdin.end();
  idp?.child.kill();
  await browser?.close();
  await stack?.stop();
});

const IDP_CLIENT = { client_id: "gatehouse-console-e2e", client_secret: "e2e-client-secret" };

/**
 * A real OpenID Connect provider (npm `oidc-provider`, tests/clients/oidc-provider.mjs) that signs
 * Carol in without a form. Returns { child, issuer }.
 */
async function startOidcProvider(redirectUri) {
  const options = {
    mode: "normal",
    clients: [{ ...IDP_CLIENT, redirect_uris: [redirectUri] }],
    accounts: { [CAROL]: { sub: "carol-at-idp", email_verified: true, name: "Carol at the IdP" } },
  };
  const child = spawn("node", [join(repoRoot, "tests/clients/oidc-provider.mjs"), JSON.stringify(options)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const issuer = await new Promise((ok, fail) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      for (const line of out.split("\n")) {
        try {
          const msg = JSON.parse(line);
          if (msg.type === "listening") ok(msg.issuer);
        } catch {
          // not a whole line yet
        }
      }
    });
    child.on("exit", (code) => fail(new Error(`the OIDC provider exited (${code}); run tests/clients/setup.sh`)));
  });
  return { child, issuer };
}

const ALICE = "alice@acme.example";
const BOB = "bob@globex.example";
const CAROL = "carol@acme.example";

test("a team signs up, creates an org and invites a teammate; another org sees none of it", async () => {
  const alice = await newUser(browser, stack, "alice");
  const bob = await newUser(browser, stack, "bob");
  const carol = await newUser(browser, stack, "carol");

  // Signed out: the console sends you to login.
  await alice.page.goto("/");
  await alice.page.waitForURL("**/login");
  await visit(alice.page, "login", { shot: "login" });
  await alice.page.goto("/signup");
  await visit(alice.page, "sign up", { shot: "signup" });

  // A wrong password is shown at the form, without a browser error.
  const done401 = alice.expectStatus(401);
  await alice.page.goto("/login");
  await alice.page.getByLabel("Email").fill(ALICE);
  await alice.page.getByLabel("Password").fill("not the password");
  await alice.page.getByRole("button", { name: "Log in", exact: true }).click();
  await alice.page.getByRole("alert").filter({ hasText: /invalid|incorrect|wrong/i }).waitFor();
  await done401();

  // A field error from the API appears at its field.
  const done400 = alice.expectStatus(400);
  await alice.page.goto("/signup");
  await alice.page.getByLabel("Email").fill(ALICE);
  await alice.page.getByLabel("Password").fill("short");
  await alice.page.getByRole("button", { name: "Create account" }).click();
  const pwError = alice.page.locator(".field-invalid").filter({ has: alice.page.getByLabel("Password") });
  await pwError.getByText(/at least 8/).waitFor();
  await done400();

  await signUpAndLogIn(alice, stack, { email: ALICE, name: "Alice Admin" });
  // With no org yet, the console offers to create one.
  await alice.page.waitForURL("**/orgs/new");
  await visit(alice.page, "create org", { shot: "create-org" });
  await createOrg(alice, { name: "Acme Corp", slug: "acme" });
  await visit(alice.page, "org overview", { shot: "org-overview" });

  // Bob, of another org, is signed in at the same time.
  await signUpAndLogIn(bob, stack, { email: BOB, name: "Bob Globex" });
  await createOrg(bob, { name: "Globex", slug: "globex" });

  // Alice invites Carol.
  await alice.page.getByRole("link", { name: "Members" }).first().click();
  await alice.page.getByLabel("Email to invite").fill(CAROL);
  await alice.page.getByLabel("Role", { exact: true }).selectOption("developer");
  await alice.page.getByRole("button", { name: "Send invitation" }).click();
  await alice.page.getByText(`Invitation sent to ${CAROL}`).waitFor();
  await alice.page.getByRole("cell", { name: CAROL, exact: true }).waitFor();
  await visit(alice.page, "members with a pending invitation", { shot: "members" });

  // Carol signs up, then opens the invitation link: login first, then back to accept.
  await carol.page.goto("/signup");
  await carol.page.getByLabel("Email").fill(CAROL);
  await carol.page.getByLabel("Password").fill("correct horse battery staple");
  await carol.page.getByRole("button", { name: "Create account" }).click();
  const verify = await stack.mail.waitFor(CAROL, { subject: /verify/i });
  await carol.page.goto(verify.link("/verify-email"));
  await carol.page.getByText("Your email address is verified").waitFor();
  await visit(carol.page, "verify email");
  const invitation = await stack.mail.waitFor(CAROL, { subject: /invited you to Acme Corp/ });
  await carol.page.goto(invitation.link("/invitations/accept"));
  await carol.page.waitForURL((u) => u.pathname === "/login" && u.searchParams.get("next")?.startsWith("/invitations/accept"));
  await logIn(carol, { email: CAROL });
  await carol.page.getByText("You joined").waitFor();
  await visit(carol.page, "invitation accepted", { shot: "invitation-accepted" });
  await carol.page.getByRole("link", { name: "Open Acme Corp" }).click();
  await carol.page.getByRole("heading", { name: "Acme Corp", level: 1 }).waitFor();

  // Alice sees Carol as a member and makes her an admin.
  await alice.page.reload();
  const carolRole = alice.page.getByLabel(`Role of ${CAROL}`);
  await carolRole.selectOption("admin");
  await alice.page.waitForResponse((r) => r.url().includes("/members/") && r.request().method() === "PATCH");
  const members = await api(alice, "GET", "/api/v1/orgs/acme/members");
  assert.equal(members.body.find((m) => m.email === CAROL)?.role, "admin");

  // Org settings and account pages.
  const doneSso = alice.expectStatus(404); // no SSO configured yet: GET …/sso answers 404
  await alice.page.getByRole("link", { name: "Settings" }).click();
  await alice.page.getByRole("heading", { name: "Org settings" }).waitFor();
  await alice.page.getByText("included calls").waitFor();
  await visit(alice.page, "org settings", { shot: "org-settings" });
  await doneSso();

  // The org's SSO provider: API field errors appear at their fields, then a real provider.
  const sso = alice.page.getByRole("region", { name: "Single sign-on (OpenID Connect)" });
  const ssoField = (label) => sso.locator(".field").filter({ has: alice.page.getByLabel(label, { exact: true }) });
  const done400sso = alice.expectStatus(400);
  await sso.getByLabel("Issuer URL").fill(`${idp.issuer}/not-an-issuer`);
  await sso.getByLabel("Client ID").fill(IDP_CLIENT.client_id);
  await sso.getByLabel("Client secret").fill(IDP_CLIENT.client_secret);
  await sso.getByLabel("Allowed email domains").fill("acme.example, not a domain");
  await sso.getByRole("button", { name: "Save SSO settings" }).click();
  await ssoField("Allowed email domains").locator(".field-error").getByText(/domain name/).waitFor();
  await sso.getByLabel("Allowed email domains").fill("acme.example");
  await sso.getByRole("button", { name: "Save SSO settings" }).click();
  await ssoField("Issuer URL").locator(".field-error").getByText(/discovery failed/).waitFor();
  await done400sso();
  await sso.getByLabel("Issuer URL").fill(idp.issuer);
  await sso.getByRole("button", { name: "Save SSO settings" }).click();
  await sso.getByText("SSO settings saved.").waitFor();
  await sso.getByText(`${stack.url}/api/v1/sso/callback`).waitFor();
  assert.equal(await sso.getByLabel("Client secret").inputValue(), "", "the secret is write-only");
  await sso.getByText(/A secret is stored/).waitFor();
  // The org's email domains: a field error at its field, then the TXT record to publish.
  const domainsCard = alice.page.getByRole("region", { name: "SSO email domains" });
  const addDomain = alice.page.getByRole("form", { name: "Add an email domain" });
  const done400domain = alice.expectStatus(400);
  await addDomain.getByLabel("Domain").fill("not a domain");
  await addDomain.getByRole("button", { name: "Add domain" }).click();
  await addDomain.locator(".field-error").getByText(/domain name/).waitFor();
  await done400domain();
  await addDomain.getByLabel("Domain").fill("acme.example");
  await addDomain.getByRole("button", { name: "Add domain" }).click();
  await domainsCard.getByText("_gatehouse-challenge.acme.example").waitFor();
  await domainsCard.getByText("not verified").waitFor();
  await visit(alice.page, "org settings with SSO", { shot: "org-settings-sso" });
  const stored = await api(alice, "GET", "/api/v1/orgs/acme/sso");
  assert.equal(stored.body.issuer_url, idp.issuer);
  assert.deepEqual(stored.body.allowed_domains, ["acme.example"]);
  assert.equal(stored.body.client_secret_set, true);
  assert.ok(!JSON.stringify(stored.body).includes(IDP_CLIENT.client_secret), "the secret is never returned");

  // Carol logs in through the org's SSO in a fresh browser: the provider signs her in, and since
  // acme.example is not a domain the org verified, Gatehouse links her account only once she
  // confirms from the mail it sends her; the confirmation moves on to the provider and back.
  const carolSso = await newUser(browser, stack, "carol-sso");
  await carolSso.page.goto("/login");
  // An org that does not use SSO: the browser comes back to the login page, which says so.
  await carolSso.page.getByLabel("Org (for single sign-on)").fill("no-such-org");
  await carolSso.page.getByRole("button", { name: "Log in with SSO" }).click();
  await carolSso.page.getByText(/does not exist or does not use single sign-on/).waitFor();
  await carolSso.page.getByLabel("Org (for single sign-on)").fill("acme");
  await carolSso.page.getByRole("button", { name: "Log in with SSO" }).click();
  // Back from the provider, the login page says a confirmation link is on its way.
  await carolSso.page.getByText(/Check your inbox: to finish signing in/).waitFor();
  await visit(carolSso.page, "login after SSO (confirm by mail)");
  const link = await stack.mail.waitFor(CAROL, { subject: /Confirm your email to sign in to Acme Corp/ });
  await carolSso.page.goto(link.link("/sso/confirm"));
  await carolSso.page.getByRole("button", { name: "Confirm and continue" }).click();
  await carolSso.page
    .waitForURL((u) => u.origin === stack.url && !u.pathname.startsWith("/api/") && !u.pathname.startsWith("/login"))
    .catch(async (e) => {
      throw new Error(`${e.message}\nat ${carolSso.page.url()}:\n${await carolSso.page.locator("body").innerText()}`);
    });
  const session = await api(carolSso, "GET", "/api/v1/session");
  assert.equal(session.body.user?.email, CAROL, JSON.stringify(session));
  await carolSso.close();

  // Removing the provider: members sign in with passwords again.
  await sso.getByRole("button", { name: "Remove SSO" }).click();
  await alice.page.getByRole("dialog").getByRole("button", { name: "Remove" }).click();
  await sso.getByText("Redirect URI").waitFor({ state: "detached" });
  const doneGone = alice.expectStatus(404);
  assert.equal((await api(alice, "GET", "/api/v1/orgs/acme/sso")).status, 404);
  await doneGone();
  await alice.page.getByRole("link", { name: "Account" }).click();
  await alice.page.getByRole("heading", { name: "Account", level: 1 }).waitFor();
  await visit(alice.page, "account", { shot: "account" });

  // Bob sees nothing of Acme: not in his org list, not at any of its pages, not through the API.
  await bob.page.goto("/orgs");
  await visit(bob.page, "bob's orgs", { shot: "orgs" });
  assert.ok(!(await bob.page.content()).includes("Acme"), "bob's org list mentions Acme");
  for (const path of ["/orgs/acme", "/orgs/acme/members", "/orgs/acme/settings"]) {
    await bob.page.goto(path);
    await bob.page.getByRole("heading", { name: "Not found" }).waitFor();
    const text = await bob.page.locator("body").innerText();
    for (const secret of ["Acme Corp", ALICE, CAROL, "Alice Admin"]) assert.ok(!text.includes(secret), `bob sees ${secret} at ${path}`);
    await visit(bob.page, `bob at ${path}`);
  }
  const doneBob404 = bob.expectStatus(404);
  for (const path of ["/api/v1/orgs/acme", "/api/v1/orgs/acme/members", "/api/v1/orgs/acme/invitations"]) {
    assert.equal((await api(bob, "GET", path)).status, 404, path);
  }
  await doneBob404();
  // …and Alice's and Carol's pages never showed Globex.
  for (const user of [alice, carol]) {
    await user.page.goto("/orgs");
    await user.page.getByRole("link", { name: "Acme Corp" }).waitFor();
    assert.ok(!(await user.page.locator("body").innerText()).includes("Globex"), `${user.name} sees Globex`);
  }

  // The session ends while Alice works: the next request sends her to login, then back.
  await alice.page.goto("/orgs/acme/members");
  await alice.page.getByRole("heading", { name: "Members", level: 1 }).waitFor();
  await alice.context.clearCookies();
  const done401b = alice.expectStatus(401);
  await alice.page.getByRole("link", { name: "Settings" }).click();
  await alice.page.waitForURL((u) => u.pathname === "/login" && u.searchParams.get("next") === "/orgs/acme/settings");
  await alice.page.getByText("Your session ended").waitFor();
  await done401b();
  const doneSso2 = alice.expectStatus(404);
  await logIn(alice, { email: ALICE });
  await alice.page.waitForURL("**/orgs/acme/settings");
  await alice.page.getByRole("heading", { name: "Org settings" }).waitFor();
  await doneSso2();

  // Deleting an org from its danger zone: Alice's scratch org goes, Acme stays and opens.
  await createOrg(alice, { name: "Scratch", slug: "scratch" });
  const doneScratchSso = alice.expectStatus(404);
  await alice.page.goto("/orgs/scratch/settings");
  await alice.page.getByRole("heading", { name: "Danger zone" }).waitFor();
  await alice.page.getByRole("button", { name: "Delete organization" }).click();
  const dialog = alice.page.getByRole("dialog");
  await dialog.getByRole("heading", { name: "Delete Scratch?" }).waitFor();
  assert.ok(await dialog.getByRole("button", { name: "Delete organization" }).isDisabled(), "not before the slug is typed");
  await dialog.getByLabel(/Type scratch to confirm/).fill("scratch");
  await visit(alice.page, "delete org dialog", { shot: "org-delete" });
  await dialog.getByRole("button", { name: "Delete organization" }).click();
  await alice.page.waitForURL((u) => u.pathname === "/orgs/acme");
  await alice.page.getByRole("heading", { name: "Acme Corp", level: 1 }).waitFor();
  await doneScratchSso();
  const doneScratch = alice.expectStatus(404);
  assert.equal((await api(alice, "GET", "/api/v1/orgs/scratch")).status, 404);
  await doneScratch();
  // Bob deletes Globex, his only org: the console offers to create one.
  const doneGlobexSso = bob.expectStatus(404);
  await bob.page.goto("/orgs/globex/settings");
  await bob.page.getByRole("button", { name: "Delete organization" }).click();
  await bob.page.getByRole("dialog").getByLabel(/Type globex to confirm/).fill("globex");
  await bob.page.getByRole("dialog").getByRole("button", { name: "Delete organization" }).click();
  await bob.page.waitForURL("**/orgs/new");
  await doneGlobexSso();
  assert.equal((await api(carol, "GET", "/api/v1/orgs/acme")).status, 200, "other orgs' members keep their access");

  // Logging out from the user menu.
  await alice.page.getByRole("button", { name: /Account menu/ }).click();
  await alice.page.getByRole("menuitem", { name: "Log out" }).click();
  await alice.page.waitForURL((u) => u.pathname === "/login");
  await alice.page.getByRole("heading", { name: /Log in/ }).waitFor();

  // Forgot password → the mail → a new password → log in with it (the old one no longer works).
  await alice.page.getByRole("link", { name: "Forgot your password?" }).click();
  await alice.page.getByRole("heading", { name: "Reset your password" }).waitFor();
  await visit(alice.page, "forgot password", { shot: "reset-password" });
  await alice.page.getByLabel("Email").fill(ALICE);
  await alice.page.getByRole("button", { name: "Send the link" }).click();
  await alice.page.getByRole("status").waitFor();
  const reset = await stack.mail.waitFor(ALICE, { subject: /Reset your Gatehouse password/ });
  await alice.page.goto(reset.link("/reset-password"));
  await alice.page.getByRole("heading", { name: "Choose a new password" }).waitFor();
  await visit(alice.page, "choose a new password");
  const NEW_PASSWORD = "a brand new passphrase 42";
  await alice.page.getByLabel("New password").fill(NEW_PASSWORD);
  await alice.page.getByRole("button", { name: "Set password" }).click();
  await alice.page.waitForURL((u) => u.pathname === "/login" && u.searchParams.get("reset") === "1");
  await alice.page.getByText("Your password is changed").waitFor();
  const doneOld = alice.expectStatus(401);
  await alice.page.getByLabel("Email").fill(ALICE);
  await alice.page.getByLabel("Password").fill("correct horse battery staple");
  await alice.page.getByRole("button", { name: "Log in", exact: true }).click();
  await alice.page.getByRole("alert").filter({ hasText: /invalid|incorrect|wrong/i }).waitFor();
  await doneOld();
  await logIn(alice, { email: ALICE, password: NEW_PASSWORD });
  assert.equal((await api(alice, "GET", "/api/v1/session")).body.user.email, ALICE);

  for (const user of [alice, bob, carol]) user.assertNoErrors();
});
