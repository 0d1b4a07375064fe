// The org the page is about: the `:org` slug of the URL, resolved among the user's orgs.
import { useQuery } from "@tanstack/react-query";
import { useParams } from "react-router";
import { api, unwrap, type Schemas } from "./client";

export type Org = Schemas["OrgOut"];
export type Role = Schemas["Role"];

const ROLE_ORDER: Role[] = ["viewer", "developer", "admin", "owner"];

/** Whether `role` is at least `needed` (viewer < developer < admin < owner). */
export function roleAtLeast(role: Role | undefined, needed: Role): boolean {
  return role !== undefined && ROLE_ORDER.indexOf(role) >= ROLE_ORDER.indexOf(needed);
}

export const orgsQuery = {
  queryKey: ["orgs"] as const,
  queryFn: () => unwrap(api.GET("/api/v1/orgs")),
};

export function useOrgs() {
  return useQuery(orgsQuery);
}

/**
 * The current org (from the `:org` route parameter) and the user's role in it. `org` is undefined
 * while loading, and when the user is not a member (the page then shows "not found").
 */
export function useCurrentOrg(): { slug: string; org: Org | undefined; role: Role | undefined; loading: boolean } {
  const { org: slug = "" } = useParams();
  const orgs = useOrgs();
  const org = orgs.data?.find((o) => o.slug === slug);
  return { slug, org, role: org?.role, loading: orgs.isPending };
}
