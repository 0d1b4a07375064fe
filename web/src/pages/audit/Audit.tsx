// The org's audit trail: filters, pages, a live tail of new events, export (JSON Lines, CSV) and
// verification of the hash chain with the first broken link.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { api, ApiError, unwrap, type Schemas, type Problem } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { EmptyState, ErrorState, Field, FormAlert, Loading, Notice, PageHeader, formErrors } from "../../components";
import { AUDIT_COLUMNS, parseJsonLines, toCsv } from "../../lib/csv";
import { Section, when } from "../servers/common";

type Event = Schemas["AuditEventOut"];
type Outcome = "success" | "denied" | "error" | "rate_limited";
type Filters = { from: string; to: string; action: string; actor: string; outcome: "" | Outcome };
const NO_FILTERS: Filters = { from: "", to: "", action: "", actor: "", outcome: "" };
const TAIL_EVERY_MS = 2000;

function query(f: Filters, afterSeq?: number, limit = 100) {
  return {
    from: f.from ? new Date(f.from).toISOString() : undefined,
    to: f.to ? new Date(f.to).toISOString() : undefined,
    action: f.action || undefined,
    actor: f.actor || undefined,
    outcome: f.outcome || undefined,
    after_seq: afterSeq,
    limit,
  };
}

function download(name: string, type: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

/** A sequence number typed in a range field: empty is no bound. */
function seqParam(raw: string): number | undefined {
  const t = raw.trim();
  return t === "" ? undefined : Number(t);
}

function Verify({ org }: { org: string }) {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const verify = useMutation({
    mutationFn: async () => {
      const query = { from_seq: seqParam(from), to_seq: seqParam(to) };
      const result = await unwrap(api.GET("/api/v1/orgs/{org}/audit/verify", { params: { path: { org }, query } }));
      // The broken link: the entry before the first broken one (what it should link to) and the
      // broken entry itself, as stored.
      let link: Event[] = [];
      if (result.first_broken_seq != null) {
        const before = Math.max(result.first_broken_seq - 2, 0);
        const page = await unwrap(api.GET("/api/v1/orgs/{org}/audit", { params: { path: { org }, query: { after_seq: before, limit: 2 } } }));
        link = page.events.filter((e) => e.seq <= result.first_broken_seq!);
      }
      return { result, link, ranged: query.from_seq !== undefined || query.to_seq !== undefined };
    },
  });
  const errors = formErrors(verify.error, ["from_seq", "to_seq"]);
  const v = verify.data?.result;
  const link = verify.data?.link ?? [];
  const ranged = verify.data?.ranged ?? false;
  const scope = v == null ? "" : v.to_seq < v.from_seq ? "nothing to verify in this range" : `entries #${v.from_seq}–#${v.to_seq}`;
  function submit(e: FormEvent) {
    e.preventDefault();
    verify.mutate();
  }
  return (
    <div className="stack">
      <form className="inline-form" onSubmit={submit} noValidate aria-label="Verify integrity">
        <Field label="From entry #" hint="Empty: the first entry." error={errors.field.from_seq}>
          <input inputMode="numeric" value={from} onChange={(e) => setFrom(e.target.value)} />
        </Field>
        <Field label="To entry #" hint="Empty: the newest entry." error={errors.field.to_seq}>
          <input inputMode="numeric" value={to} onChange={(e) => setTo(e.target.value)} />
        </Field>
        <button type="submit" className="btn" disabled={verify.isPending}>
          {verify.isPending ? "Verifying…" : "Verify integrity"}
        </button>
      </form>
      <FormAlert message={errors.form} />
      {v &&
        (v.valid ? (
          <Notice>
            {ranged
              ? `The range verifies (${scope}, ${v.entries.toLocaleString()} entries).`
              : `The chain verifies: all ${v.entries.toLocaleString()} entries and the chain head are intact.`}
            {v.pruned_through_seq > 0 && ` Entries up to #${v.pruned_through_seq} were removed by the plan's retention.`}
          </Notice>
        ) : (
          <div className="alert alert-error" role="alert">
            The {ranged ? "range" : "chain"} does not verify ({scope}, {v.entries.toLocaleString()} entries).
            {v.first_broken_seq != null && (
              <>
                {" "}
                First broken link: entry <strong data-testid="first-broken">#{v.first_broken_seq}</strong>.
              </>
            )}
            {v.head_mismatch && " The chain head disagrees with the last entry: entries were removed from the end."}
          </div>
        ))}
      {v?.first_broken_seq != null && (
        <div className="table-wrap" role="region" aria-label="First broken link" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col" className="num">
                  #
                </th>
                <th scope="col">Action</th>
                <th scope="col">Links to (prev_hash)</th>
                <th scope="col">Stored hash</th>
              </tr>
            </thead>
            <tbody>
              {link.map((e) => (
                <tr key={e.seq} className={e.seq === v.first_broken_seq ? "row-danger" : undefined}>
                  <td className="num">{e.seq}</td>
                  <td className="mono">{e.action}</td>
                  <td className="mono hash">{e.prev_hash}</td>
                  <td className="mono hash">{e.entry_hash}</td>
                </tr>
              ))}
              {!link.some((e) => e.seq === v.first_broken_seq) && (
                <tr>
                  <td className="num">{v.first_broken_seq}</td>
                  <td colSpan={3}>missing: the entry was removed</td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

export default function Audit() {
  const { slug: org, role } = useCurrentOrg();
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [events, setEvents] = useState<Event[]>([]);
  const [next, setNext] = useState<number | null | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [tail, setTail] = useState(false);
  const [exportError, setExportError] = useState<unknown>(null);
  const lastSeq = useRef<number | undefined>(undefined);
  const allowed = roleAtLeast(role, "admin");

  async function fetchPage(f: Filters, after: number | undefined, limit = 100) {
    return unwrap(api.GET("/api/v1/orgs/{org}/audit", { params: { path: { org }, query: query(f, after, limit) } }));
  }

  // A new filter starts over from the first matching event.
  useEffect(() => {
    if (!allowed) return;
    let cancelled = false;
    setLoading(true);
    setError(null);
    setEvents([]);
    fetchPage(filters, undefined)
      .then((page) => {
        if (cancelled) return;
        setEvents(page.events);
        setNext(page.next_after_seq ?? null);
        lastSeq.current = page.events.at(-1)?.seq;
      })
      .catch((e) => !cancelled && setError(e))
      .finally(() => !cancelled && setLoading(false));
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [org, filters, allowed]);

  // The live tail: catch up to the newest event, then ask for what came after every few seconds.
  useEffect(() => {
    if (!tail || !allowed) return;
    let stopped = false;
    let timer: number | undefined;
    async function poll() {
      try {
        let more = true;
        while (more && !stopped) {
          const page = await fetchPage(filters, lastSeq.current, 1000);
          if (stopped) return;
          if (page.events.length) {
            lastSeq.current = page.events.at(-1)!.seq;
            setEvents((old) => [...old, ...page.events].slice(-2000));
          }
          more = page.next_after_seq != null;
        }
        setNext(null);
        setError(null);
      } catch (e) {
        setError(e);
      }
      if (!stopped) timer = window.setTimeout(poll, TAIL_EVERY_MS);
    }
    poll();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tail, org, filters, allowed]);

  async function loadMore() {
    if (next == null) return;
    try {
      const page = await fetchPage(filters, next);
      setEvents((old) => [...old, ...page.events]);
      setNext(page.next_after_seq ?? null);
      lastSeq.current = page.events.at(-1)?.seq ?? lastSeq.current;
    } catch (e) {
      setError(e);
    }
  }

  async function exportAs(format: "jsonl" | "csv") {
    setExportError(null);
    try {
      const { data, error: problem, response } = await api.GET("/api/v1/orgs/{org}/audit/export", {
        params: { path: { org }, query: query(filters) },
        parseAs: "text",
      });
      if (!response.ok || typeof data !== "string") {
        // Parsed as text: a problem document arrives as its JSON text.
        let parsed: Problem | null = null;
        try {
          parsed = typeof problem === "string" ? (JSON.parse(problem) as Problem) : null;
        } catch {
          parsed = null;
        }
        throw new ApiError(response.status, parsed);
      }
      const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "");
      if (format === "jsonl") download(`audit-${org}-${stamp}.jsonl`, "application/x-ndjson", data);
      else download(`audit-${org}-${stamp}.csv`, "text/csv", toCsv(parseJsonLines(data), AUDIT_COLUMNS));
    } catch (e) {
      setExportError(e);
    }
  }

  function apply(e: FormEvent) {
    e.preventDefault();
    setFilters(draft);
  }

  if (!allowed) {
    return (
      <>
        <PageHeader title="Audit log" />
        <EmptyState title="Admins only">The audit log is visible to the org's admins and owners.</EmptyState>
      </>
    );
  }
  return (
    <>
      <PageHeader
        title="Audit log"
        description="Every change in the console or API and every MCP call, hash-chained."
        actions={
          <>
            <button type="button" className="btn" onClick={() => exportAs("jsonl")}>
              Export JSON Lines
            </button>
            <button type="button" className="btn" onClick={() => exportAs("csv")}>
              Export CSV
            </button>
          </>
        }
      />
      <FormAlert message={exportError ? formErrors(exportError, []).form : null} />
      <Section title="Filters">
        <form className="audit-filters" onSubmit={apply} aria-label="Audit filters">
          <Field label="From">
            <input type="datetime-local" value={draft.from} onChange={(e) => setDraft({ ...draft, from: e.target.value })} />
          </Field>
          <Field label="To">
            <input type="datetime-local" value={draft.to} onChange={(e) => setDraft({ ...draft, to: e.target.value })} />
          </Field>
          <Field label="Action starts with">
            <input value={draft.action} onChange={(e) => setDraft({ ...draft, action: e.target.value })} placeholder="tool." />
          </Field>
          <Field label="Actor id">
            <input value={draft.actor} onChange={(e) => setDraft({ ...draft, actor: e.target.value })} />
          </Field>
          <Field label="Outcome">
            <select value={draft.outcome} onChange={(e) => setDraft({ ...draft, outcome: e.target.value as Filters["outcome"] })}>
              <option value="">any</option>
              <option value="success">success</option>
              <option value="denied">denied</option>
              <option value="error">error</option>
              <option value="rate_limited">rate limited</option>
            </select>
          </Field>
          <div className="form-actions">
            <button type="submit" className="btn btn-primary">
              Apply
            </button>
            <button
              type="button"
              className="btn"
              onClick={() => {
                setDraft(NO_FILTERS);
                setFilters(NO_FILTERS);
              }}
            >
              Clear
            </button>
          </div>
        </form>
      </Section>
      <Section title="Integrity">
        <Verify org={org} />
      </Section>
      <Section
        title="Events"
        actions={
          <label className="check" style={{ marginBottom: 0 }}>
            <input type="checkbox" checked={tail} onChange={(e) => setTail(e.target.checked)} />
            {tail && <span className="live-dot" aria-hidden="true" />}
            Live tail
          </label>
        }
      >
        {error ? (
          <ErrorState error={error} retry={() => setFilters({ ...filters })} />
        ) : loading ? (
          <Loading />
        ) : events.length === 0 ? (
          <EmptyState title="No events">{filters === NO_FILTERS ? "Nothing has happened yet." : "No event matches these filters."}</EmptyState>
        ) : (
          <>
            <div className="table-wrap" role="region" aria-label="Audit events" tabIndex={0} aria-live={tail ? "polite" : undefined}>
              <table>
                <thead>
                  <tr>
                    <th scope="col" className="num">
                      #
                    </th>
                    <th scope="col">When</th>
                    <th scope="col">Actor</th>
                    <th scope="col">Action</th>
                    <th scope="col">Outcome</th>
                    <th scope="col">Target</th>
                    <th scope="col">Details</th>
                  </tr>
                </thead>
                <tbody>
                  {events.map((e) => (
                    <tr key={e.seq}>
                      <td className="num">{e.seq}</td>
                      <td>{when(e.occurred_at)}</td>
                      <td>
                        {e.actor_label ?? e.actor_id ?? "—"} <span className="muted">({e.actor_type})</span>
                      </td>
                      <td className="mono">{e.action}</td>
                      <td>
                        <span className={e.outcome === "success" ? "badge badge-ok" : "badge badge-danger"}>{e.outcome}</span>
                      </td>
                      <td className="mono">{e.target_type ? `${e.target_type} ${e.target_id ?? ""}` : "—"}</td>
                      <td>
                        <details>
                          <summary>details</summary>
                          <pre className="code">{JSON.stringify(e.details, null, 2)}</pre>
                        </details>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            {next != null && !tail && (
              <button type="button" className="btn" style={{ marginTop: 12 }} onClick={loadMore}>
                Load more
              </button>
            )}
          </>
        )}
      </Section>
    </>
  );
}
