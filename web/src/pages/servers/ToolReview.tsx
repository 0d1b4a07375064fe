// Review of one tool: the approved (pinned) definition beside the latest one seen upstream, with
// invisible and bidirectional characters escaped, and the decision.
import { useEffect, useMemo, useRef } from "react";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { FormAlert, formErrors } from "../../components";
import { sideBySide, summarize, type Cell, type Row } from "../../lib/definitionDiff";
import { StatusBadge } from "./common";

function DiffCell({ cell, side, kind }: { cell: Cell | null; side: "left" | "right"; kind: Row["kind"] }) {
  if (!cell) return <div className="diff-cell blank" aria-hidden="true" />;
  const cls = ["diff-cell"];
  if (kind === "changed") cls.push(side === "left" ? "changed-left" : "changed-right");
  else if (kind !== "same") cls.push(kind);
  if (cell.hidden) cls.push("hidden-chars");
  const label = kind === "same" ? undefined : side === "left" ? "removed" : "added";
  return (
    <div className={cls.join(" ")}>
      <span className="ln">{cell.line}</span>
      <span>
        {label && <span className="sr-only">{label}: </span>}
        {cell.text}
      </span>
    </div>
  );
}

export function ToolReview({
  org,
  tool,
  canDecide,
  onClose,
}: {
  org: string;
  tool: Schemas["ToolOut"];
  canDecide: boolean;
  onClose: () => void;
}) {
  const qc = useQueryClient();
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [tool.id]);
  const rows = useMemo(() => sideBySide(tool.approved_definition ?? null, tool.definition), [tool]);
  const summary = summarize(rows);
  const done = async () => {
    await qc.invalidateQueries({ queryKey: ["org", org] });
    onClose();
  };
  const approve = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST("/api/v1/orgs/{org}/tools/{tool_id}/approve", {
          params: { path: { org, tool_id: tool.id } },
          body: { definition_hash: tool.definition_hash },
        }),
      ),
    onSuccess: done,
  });
  const reject = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/orgs/{org}/tools/{tool_id}/reject", { params: { path: { org, tool_id: tool.id } } })),
    onSuccess: done,
  });
  const error = formErrors(approve.error ?? reject.error, []).form;
  const isNew = !tool.approved_definition;
  return (
    <section className="card" aria-labelledby="review-title">
      <div className="page-header">
        <h2 id="review-title" className="section-title" tabIndex={-1} ref={heading}>
          Review <span className="mono">{tool.exposed_name}</span> <StatusBadge status={tool.status} />
        </h2>
        <button type="button" className="btn" onClick={onClose}>
          Close review
        </button>
      </div>
      <FormAlert message={error} />
      <p>
        {isNew
          ? "A new tool: nothing is approved yet. Its whole definition is shown."
          : summary.changed + summary.added + summary.removed === 0
            ? "The latest definition is the approved one."
            : `${summary.changed} line(s) changed, ${summary.added} added, ${summary.removed} removed since approval.`}{" "}
        {summary.hidden > 0 && (
          <strong className="badge badge-danger">
            {summary.hidden} line(s) hold invisible or bidirectional characters (shown as {"\\u{…}"})
          </strong>
        )}
      </p>
      {tool.flags.length > 0 && (
        <div className="alert alert-warn">
          Poisoning heuristics flagged this definition: {tool.flags.map((f) => f.code.replace(/_/g, " ")).join(", ")}.
        </div>
      )}
      <div className="diff" role="region" aria-label="Definition diff" tabIndex={0}>
        <div className="diff-head">Approved</div>
        <div className="diff-head right-head">Latest upstream</div>
        {rows.map((r, i) => (
          <DiffPair key={i} row={r} />
        ))}
      </div>
      {canDecide && (
        <div className="form-actions" style={{ marginTop: 12 }}>
          <button
            type="button"
            className="btn btn-primary"
            onClick={() => approve.mutate()}
            disabled={approve.isPending || tool.status === "approved" || tool.status === "removed"}
          >
            Approve this definition
          </button>
          <button type="button" className="btn btn-danger" onClick={() => reject.mutate()} disabled={reject.isPending || tool.status === "rejected"}>
            Reject
          </button>
          <span className="muted">
            Approval pins hash <span className="mono">{tool.definition_hash.slice(0, 12)}…</span>; a later change is withheld until reviewed.
          </span>
        </div>
      )}
    </section>
  );
}

function DiffPair({ row }: { row: Row }) {
  return (
    <>
      <DiffCell cell={row.left} side="left" kind={row.kind} />
      <DiffCell cell={row.right} side="right" kind={row.kind} />
    </>
  );
}
