// Routes of the org's product pages (servers, scopes, endpoints, tokens, audit, usage, SQL
// backends and their tools, caller attributes).
// Each `path` is relative to the org, under `/orgs/:org/` (for example "servers" or
// "servers/:serverId"); pages read the org slug with `useCurrentOrg()` from api/org. An entry with
// `nav` is listed in the sidebar under that label, in this order. Load pages with React.lazy so
// they stay out of the initial bundle; App.tsx wraps every route in <Suspense>.
import { lazy } from "react";
import type React from "react";

const Servers = lazy(() => import("./pages/servers/Servers"));
const ServerDetail = lazy(() => import("./pages/servers/ServerDetail"));
const Scopes = lazy(() => import("./pages/scopes/Scopes"));
const Endpoints = lazy(() => import("./pages/endpoints/Endpoints"));
const EndpointDetail = lazy(() => import("./pages/endpoints/EndpointDetail"));
const Tokens = lazy(() => import("./pages/tokens/Tokens"));
const Audit = lazy(() => import("./pages/audit/Audit"));
const Usage = lazy(() => import("./pages/usage/Usage"));
const Invoice = lazy(() => import("./pages/usage/Invoice"));
const Backends = lazy(() => import("./pages/backends/Backends"));
const BackendDetail = lazy(() => import("./pages/backends/BackendDetail"));
const SqlTool = lazy(() => import("./pages/backends/SqlTool"));
const NewSqlTool = lazy(() => import("./pages/backends/SqlTool").then((m) => ({ default: m.NewSqlTool })));
const Attributes = lazy(() => import("./pages/attributes/Attributes"));

export const extraRoutes: { path: string; element: React.ReactNode; nav?: string }[] = [
  { path: "servers", element: <Servers />, nav: "Servers" },
  { path: "servers/:serverId", element: <ServerDetail /> },
  { path: "scopes", element: <Scopes />, nav: "Scopes" },
  { path: "endpoints", element: <Endpoints />, nav: "Endpoints" },
  { path: "endpoints/:endpointId", element: <EndpointDetail /> },
  { path: "tokens", element: <Tokens />, nav: "Tokens" },
  { path: "audit", element: <Audit />, nav: "Audit log" },
  { path: "usage", element: <Usage />, nav: "Usage" },
  { path: "usage/invoices/:invoiceId", element: <Invoice /> },
  { path: "backends", element: <Backends />, nav: "SQL backends" },
  { path: "backends/:backendId", element: <BackendDetail /> },
  { path: "backends/:backendId/tools/new", element: <NewSqlTool /> },
  { path: "backends/:backendId/tools/:toolId", element: <SqlTool /> },
  { path: "attributes", element: <Attributes />, nav: "Caller attributes" },
];
