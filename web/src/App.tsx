import { lazy, Suspense, useEffect, useState } from "react";
import { BrowserRouter, Link, Navigate, NavLink, Outlet, Route, Routes, useLocation, useNavigate } from "react-router";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import * as DropdownMenu from "@radix-ui/react-dropdown-menu";
import { ApiError } from "./api/client";
import { SessionProvider, useSession, useSignOut } from "./api/session";
import { useCurrentOrg, useOrgs } from "./api/org";
import { ErrorState, Loading } from "./components";
import { extraRoutes } from "./routes.extra";
import { loginPath } from "./next";

const Login = lazy(() => import("./pages/auth/Login"));
const Signup = lazy(() => import("./pages/auth/Signup"));
const VerifyEmail = lazy(() => import("./pages/auth/VerifyEmail"));
const ResetPassword = lazy(() => import("./pages/auth/ResetPassword"));
const Account = lazy(() => import("./pages/auth/Account"));
const AcceptInvitation = lazy(() => import("./pages/orgs/AcceptInvitation"));
const OrgList = lazy(() => import("./pages/orgs/OrgList"));
const CreateOrg = lazy(() => import("./pages/orgs/CreateOrg"));
const OrgOverview = lazy(() => import("./pages/orgs/OrgOverview"));
const Members = lazy(() => import("./pages/orgs/Members"));
const OrgSettings = lazy(() => import("./pages/orgs/OrgSettings"));

function makeQueryClient() {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // A 4xx does not get better by asking again.
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
        refetchOnWindowFocus: false,
      },
    },
  });
}

export default function App() {
  const [client] = useState(makeQueryClient);
  return (
    <QueryClientProvider client={client}>
      <SessionProvider>
        <BrowserRouter>
          <Suspense fallback={<Loading />}>
            <Routes>
              <Route element={<PublicLayout />}>
                <Route path="/login" element={<Login />} />
                <Route path="/signup" element={<Signup />} />
                <Route path="/verify-email" element={<VerifyEmail />} />
                <Route path="/reset-password" element={<ResetPassword />} />
              </Route>
              <Route element={<RequireSession />}>
                <Route element={<AppLayout />}>
                  <Route index element={<Home />} />
                  <Route path="/invitations/accept" element={<AcceptInvitation />} />
                  <Route path="/account" element={<Account />} />
                  <Route path="/orgs" element={<OrgList />} />
                  <Route path="/orgs/new" element={<CreateOrg />} />
                  <Route path="/orgs/:org" element={<OrgScope />}>
                    <Route index element={<OrgOverview />} />
                    <Route path="members" element={<Members />} />
                    <Route path="settings" element={<OrgSettings />} />
                    {extraRoutes.map((r) => (
                      <Route key={r.path} path={r.path} element={r.element} />
                    ))}
                  </Route>
                  <Route path="*" element={<NotFound />} />
                </Route>
              </Route>
            </Routes>
          </Suspense>
        </BrowserRouter>
      </SessionProvider>
    </QueryClientProvider>
  );
}


function RequireSession() {
  const { session, loading, error, expired } = useSession();
  const location = useLocation();
  if (loading) return <Loading />;
  if (error) return <ErrorState error={error} retry={() => window.location.reload()} />;
  if (!session) return <Navigate to={loginPath(location, expired)} replace />;
  return <Outlet />;
}

function PublicLayout() {
  return (
    <div className="public">
      <header className="public-header">
        <Link to="/" className="brand">
          <span className="brand-mark" aria-hidden="true" />
          Gatehouse
        </Link>
      </header>
      <main className="public-main" id="main">
        <Suspense fallback={<Loading />}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}

function Home() {
  const orgs = useOrgs();
  if (orgs.isPending) return <Loading />;
  if (orgs.error) return <ErrorState error={orgs.error} retry={() => orgs.refetch()} />;
  const remembered = localStorage.getItem("gatehouse.org");
  const org = orgs.data.find((o) => o.slug === remembered) ?? orgs.data[0];
  return <Navigate to={org ? `/orgs/${org.slug}` : "/orgs/new"} replace />;
}

/** Checks the `:org` of the URL is one of the user's orgs (never shows another org's pages). */
function OrgScope() {
  const { org, slug, loading } = useCurrentOrg();
  useEffect(() => {
    if (org) localStorage.setItem("gatehouse.org", org.slug);
  }, [org]);
  if (loading) return <Loading />;
  if (!org) return <ErrorState error={new ApiError(404, null)} />;
  return <Outlet key={slug} />;
}

function NotFound() {
  return (
    <div className="state state-error">
      <h1>Page not found</h1>
      <p>
        <Link to="/">Go to the console home</Link>
      </p>
    </div>
  );
}

function AppLayout() {
  const [navOpen, setNavOpen] = useState(false);
  const location = useLocation();
  useEffect(() => setNavOpen(false), [location.pathname]);
  return (
    <div className="app">
      <a href="#main" className="skip-link">
        Skip to content
      </a>
      <header className="topbar">
        <button
          type="button"
          className="btn btn-icon nav-toggle"
          aria-expanded={navOpen}
          aria-controls="sidebar"
          onClick={() => setNavOpen((o) => !o)}
        >
          <span aria-hidden="true">☰</span>
          <span className="sr-only">Menu</span>
        </button>
        <Link to="/" className="brand">
          <span className="brand-mark" aria-hidden="true" />
          Gatehouse
        </Link>
        <OrgSwitcher />
        <span className="topbar-spacer" />
        <UserMenu />
      </header>
      <div className="app-body">
        <nav id="sidebar" className={navOpen ? "sidebar open" : "sidebar"} aria-label="Console">
          <OrgNav />
        </nav>
        <main className="content" id="main" tabIndex={-1}>
          <Suspense fallback={<Loading />}>
            <Outlet />
          </Suspense>
        </main>
      </div>
    </div>
  );
}

function OrgNav() {
  const { org } = useCurrentOrg();
  const remembered = useRememberedOrg();
  const slug = org?.slug ?? remembered;
  const links: { to: string; label: string; end?: boolean }[] = slug
    ? [
        { to: `/orgs/${slug}`, label: "Overview", end: true },
        ...extraRoutes.filter((r) => r.nav).map((r) => ({ to: `/orgs/${slug}/${r.path}`, label: r.nav! })),
        { to: `/orgs/${slug}/members`, label: "Members" },
        { to: `/orgs/${slug}/settings`, label: "Settings" },
      ]
    : [];
  return (
    <ul className="nav-list">
      {links.map((l) => (
        <li key={l.to}>
          <NavLink to={l.to} end={l.end}>
            {l.label}
          </NavLink>
        </li>
      ))}
      <li className="nav-sep">
        <NavLink to="/orgs" end>
          All orgs
        </NavLink>
      </li>
      <li>
        <NavLink to="/account">Account</NavLink>
      </li>
    </ul>
  );
}

/** The last org the user opened that is still one of theirs. */
function useRememberedOrg(): string | undefined {
  const orgs = useOrgs();
  const remembered = localStorage.getItem("gatehouse.org");
  return orgs.data?.find((o) => o.slug === remembered)?.slug;
}

function OrgSwitcher() {
  const orgs = useOrgs();
  const { org } = useCurrentOrg();
  const navigate = useNavigate();
  const label = org?.name ?? "Choose an org";
  return (
    <DropdownMenu.Root>
      <DropdownMenu.Trigger asChild>
        <button type="button" className="btn org-switcher" aria-label={`Current org: ${label}. Switch org`}>
          {label} <span aria-hidden="true">▾</span>
        </button>
      </DropdownMenu.Trigger>
      <DropdownMenu.Portal>
        <DropdownMenu.Content className="menu" align="start" sideOffset={4}>
          {orgs.data?.map((o) => (
            <DropdownMenu.Item key={o.id} className="menu-item" onSelect={() => navigate(`/orgs/${o.slug}`)}>
              {o.name} <span className="muted">({o.slug})</span>
            </DropdownMenu.Item>
          ))}
          <DropdownMenu.Separator className="menu-sep" />
          <DropdownMenu.Item className="menu-item" onSelect={() => navigate("/orgs/new")}>
            Create an org
          </DropdownMenu.Item>
        </DropdownMenu.Content>
      </DropdownMenu.Portal>
    </DropdownMenu.Root>
  );
}

function UserMenu() {
  const { session } = useSession();
  const signOut = useSignOut();
  const navigate = useNavigate();
  return (
    <DropdownMenu.Root>
      <DropdownMenu.Trigger asChild>
        <button type="button" className="btn user-menu" aria-label={`Account menu for ${session?.user.email ?? ""}`}>
          <span className="user-email">{session?.user.email}</span> <span aria-hidden="true">▾</span>
        </button>
      </DropdownMenu.Trigger>
      <DropdownMenu.Portal>
        <DropdownMenu.Content className="menu" align="end" sideOffset={4}>
          <DropdownMenu.Item className="menu-item" onSelect={() => navigate("/account")}>
            Account settings
          </DropdownMenu.Item>
          <DropdownMenu.Item className="menu-item" onSelect={() => void signOut()}>
            Log out
          </DropdownMenu.Item>
        </DropdownMenu.Content>
      </DropdownMenu.Portal>
    </DropdownMenu.Root>
  );
}

