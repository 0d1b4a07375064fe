// Routes of the org's product pages (servers, scopes, endpoints, tokens, audit, usage).
// Each `path` is relative to the org, under `/orgs/:org/` (for example "servers" or
// "servers/:serverId"); pages read the org slug with `useCurrentOrg()` from api/org. An entry with
// `nav` is listed in the sidebar under that label, in this order. Load pages with React.lazy so
// they stay out of the initial bundle; App.tsx wraps every route in <Suspense>.
import type React from "react";

export const extraRoutes: { path: string; element: React.ReactNode; nav?: string }[] = [];
