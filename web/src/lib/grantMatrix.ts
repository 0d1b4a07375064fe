// The scope × tool grant matrix: which tools each scope grants, edited in the browser and saved as
// one complete tool set per changed scope (`PUT /scopes/{id}/tools`).

export type MatrixScope = { id: string; name: string; tool_ids: string[] };
export type MatrixTool = { id: string; exposed_name: string; status: string };

/** Granted tool ids per scope id. */
export type Grants = Map<string, Set<string>>;

export function grantsOf(scopes: MatrixScope[]): Grants {
  return new Map(scopes.map((s) => [s.id, new Set(s.tool_ids)]));
}

export function isGranted(grants: Grants, scopeId: string, toolId: string): boolean {
  return grants.get(scopeId)?.has(toolId) ?? false;
}

function cloneGrants(grants: Grants): Grants {
  return new Map([...grants].map(([k, v]) => [k, new Set(v)]));
}

/** A copy with one cell flipped. */
export function toggle(grants: Grants, scopeId: string, toolId: string): Grants {
  const next = cloneGrants(grants);
  const set = next.get(scopeId) ?? new Set<string>();
  if (set.has(toolId)) set.delete(toolId);
  else set.add(toolId);
  next.set(scopeId, set);
  return next;
}

/** A copy in which a scope grants all of `toolIds` (on) or none of them (off); other grants stay. */
export function setColumn(grants: Grants, scopeId: string, toolIds: string[], on: boolean): Grants {
  const next = cloneGrants(grants);
  const set = next.get(scopeId) ?? new Set<string>();
  for (const t of toolIds) {
    if (on) set.add(t);
    else set.delete(t);
  }
  next.set(scopeId, set);
  return next;
}

/** A copy in which every scope of `scopeIds` grants the tool (on) or none does (off). */
export function setRow(grants: Grants, toolId: string, scopeIds: string[], on: boolean): Grants {
  let next = grants;
  for (const s of scopeIds) next = setColumn(next, s, [toolId], on);
  return next;
}

/** "all", "none" or "some" of `toolIds` granted by the scope (for a tri-state column header). */
export function columnState(grants: Grants, scopeId: string, toolIds: string[]): "all" | "none" | "some" {
  const set = grants.get(scopeId);
  const n = toolIds.filter((t) => set?.has(t)).length;
  return n === 0 ? "none" : n === toolIds.length ? "all" : "some";
}

export type Change = { scopeId: string; scopeName: string; toolIds: string[]; added: string[]; removed: string[] };

/**
 * The requests that turn `original` into `edited`: one per scope whose set differs, carrying the
 * complete new set (ids of tools the matrix does not show are kept as they are), sorted.
 */
export function changes(scopes: MatrixScope[], original: Grants, edited: Grants): Change[] {
  const out: Change[] = [];
  for (const scope of scopes) {
    const before = original.get(scope.id) ?? new Set<string>();
    const after = edited.get(scope.id) ?? new Set<string>();
    const added = [...after].filter((t) => !before.has(t)).sort();
    const removed = [...before].filter((t) => !after.has(t)).sort();
    if (added.length || removed.length) {
      out.push({ scopeId: scope.id, scopeName: scope.name, toolIds: [...after].sort(), added, removed });
    }
  }
  return out;
}

/** The tools to show as rows: not removed upstream (unless still granted), by exposed name. */
export function visibleTools<T extends MatrixTool>(tools: T[], grants: Grants): T[] {
  const granted = new Set<string>();
  for (const set of grants.values()) for (const t of set) granted.add(t);
  return tools
    .filter((t) => t.status !== "removed" || granted.has(t.id))
    .sort((a, b) => a.exposed_name.localeCompare(b.exposed_name));
}

/** A grant only takes effect while the tool is approved: cells of other tools carry a warning. */
export function grantEffective(tool: MatrixTool): boolean {
  return tool.status === "approved";
}
