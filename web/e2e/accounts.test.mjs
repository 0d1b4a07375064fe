// Accounts and orgs in the browser: sign up → verification mail → create org → invite a second
// user who accepts by mail link (signing in on the way) → roles; another org's user, signed in at
// the same time, sees none of it; session expiry sends you to login and back; every page passes
// axe-core and leaves no browser errors. Screenshots go to docs/console/.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { api, createOrg, launchBrowser, logIn, newUser, signUpAndLogIn, startStack, visit } from "./harness.mjs";

let stack;
let browser;
before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await stack?.stop();
});

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

  // Logging out from the user menu.
  await alice.page.getByRole("button", { name: /Account menu/ }).click();
  await alice.page.getByRole("menuitem", { name: "Log out" }).click();
  await alice.page.waitForURL("**/login");

  for (const user of [alice, bob, carol]) user.assertNoErrors();
});
