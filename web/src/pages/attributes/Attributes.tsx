// Caller attributes: the names the org defines (what row-level security policies read with
// `gatehouse.claim(name)`), and each member's and service token's values.
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { ConfirmDialog, EmptyState, ErrorState, Field, FormAlert, Loading, Notice, PageHeader, Table, formErrors } from "../../components";
import { Section } from "../servers/common";

type Attribute = Schemas["AttributeOut"];

function attributesQuery(org: string) {
  return {
    queryKey: ["org", org, "attributes"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/attributes", { params: { path: { org } } })),
  };
}

function DefineAttribute({ org }: { org: string }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const qc = useQueryClient();
  const create = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/orgs/{org}/attributes", { params: { path: { org } }, body: { name, description } })),
    onSuccess: async () => {
      setName("");
      setDescription("");
      await qc.invalidateQueries({ queryKey: ["org", org, "attributes"] });
    },
  });
  const errors = formErrors(create.error, ["name", "description"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate();
  }
  return (
    <form onSubmit={submit} noValidate aria-label="Define an attribute">
      <FormAlert message={errors.form} />
      <div className="grid">
        <Field label="Attribute name" hint="Lower-case letters, digits and _, e.g. customer_id." error={errors.field.name}>
          <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" spellCheck={false} />
        </Field>
        <Field label="Description" error={errors.field.description}>
          <input value={description} onChange={(e) => setDescription(e.target.value)} autoComplete="off" />
        </Field>
      </div>
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          Define attribute
        </button>
      </div>
    </form>
  );
}

type Subject = { kind: "member"; id: string; label: string } | { kind: "token"; id: string; label: string };

function Values({ org, subject, attributes, canEdit }: { org: string; subject: Subject; attributes: Attribute[]; canEdit: boolean }) {
  const qc = useQueryClient();
  const key = ["org", org, "attribute-values", subject.kind, subject.id];
  const values = useQuery({
    queryKey: key,
    queryFn: () =>
      subject.kind === "member"
        ? unwrap(api.GET("/api/v1/orgs/{org}/members/{user_id}/attributes", { params: { path: { org, user_id: subject.id } } }))
        : unwrap(
            api.GET("/api/v1/orgs/{org}/service-tokens/{service_token_id}/attributes", {
              params: { path: { org, service_token_id: subject.id } },
            }),
          ),
  });
  const [draft, setDraft] = useState<Record<string, string> | null>(null);
  const current = draft ?? values.data?.attributes ?? {};
  const save = useMutation({
    mutationFn: () => {
      const attributes = Object.fromEntries(Object.entries(current).filter(([, v]) => v.trim() !== ""));
      return subject.kind === "member"
        ? unwrap(
            api.PUT("/api/v1/orgs/{org}/members/{user_id}/attributes", { params: { path: { org, user_id: subject.id } }, body: { attributes } }),
          )
        : unwrap(
            api.PUT("/api/v1/orgs/{org}/service-tokens/{service_token_id}/attributes", {
              params: { path: { org, service_token_id: subject.id } },
              body: { attributes },
            }),
          );
    },
    onSuccess: async () => {
      setDraft(null);
      await qc.invalidateQueries({ queryKey: key });
    },
  });
  if (values.isPending) return <Loading />;
  if (values.error) return <ErrorState error={values.error} retry={() => values.refetch()} />;
  const errors = formErrors(save.error, []);
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
      noValidate
      aria-label={`Attribute values of ${subject.label}`}
    >
      <FormAlert message={errors.form} />
      {save.isSuccess && !draft && <Notice>Saved; the dataplanes apply it within a second.</Notice>}
      {attributes.map((a) => (
        <Field key={a.name} label={a.name} hint={a.description || undefined}>
          <input
            value={current[a.name] ?? ""}
            onChange={(e) => setDraft({ ...current, [a.name]: e.target.value })}
            readOnly={!canEdit}
            autoComplete="off"
            spellCheck={false}
          />
        </Field>
      ))}
      {canEdit && (
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={save.isPending || !draft}>
            Save values
          </button>
        </div>
      )}
    </form>
  );
}

function AssignValues({ org, attributes, canEdit }: { org: string; attributes: Attribute[]; canEdit: boolean }) {
  const members = useQuery({
    queryKey: ["org", org, "members"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/members", { params: { path: { org } } })),
  });
  const tokens = useQuery({
    queryKey: ["org", org, "service-tokens"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/service-tokens", { params: { path: { org } } })),
  });
  const [selected, setSelected] = useState("");
  if (members.isPending || tokens.isPending) return <Loading />;
  if (members.error || tokens.error) return <ErrorState error={members.error ?? tokens.error} retry={() => (members.refetch(), tokens.refetch())} />;
  const subjects: Subject[] = [
    ...members.data.map((m) => ({ kind: "member" as const, id: m.user_id, label: `${m.display_name || m.email} (member)` })),
    ...tokens.data.filter((t) => !t.revoked_at).map((t) => ({ kind: "token" as const, id: t.id, label: `${t.name} (service token)` })),
  ];
  const subject = subjects.find((s) => `${s.kind}:${s.id}` === selected);
  return (
    <div>
      <Field label="Caller" hint="A member or a live service token.">
        <select value={selected} onChange={(e) => setSelected(e.target.value)}>
          <option value="">Choose a caller…</option>
          {subjects.map((s) => (
            <option key={`${s.kind}:${s.id}`} value={`${s.kind}:${s.id}`}>
              {s.label}
            </option>
          ))}
        </select>
      </Field>
      {subject && <Values key={selected} org={org} subject={subject} attributes={attributes} canEdit={canEdit} />}
    </div>
  );
}

export default function Attributes() {
  const { slug: org, role } = useCurrentOrg();
  const attributes = useQuery(attributesQuery(org));
  const qc = useQueryClient();
  const canEdit = roleAtLeast(role, "admin");
  const remove = useMutation({
    mutationFn: (name: string) => unwrap(api.DELETE("/api/v1/orgs/{org}/attributes/{attribute}", { params: { path: { org, attribute: name } } })),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["org", org] }),
  });
  return (
    <>
      <PageHeader
        title="Caller attributes"
        description="Verified facts about each caller that SQL backends' row-level security policies read with gatehouse.claim('name')."
      />
      {canEdit && (
        <Section title="Define an attribute">
          <DefineAttribute org={org} />
        </Section>
      )}
      <Section title="Attributes">
        {attributes.isPending ? (
          <Loading />
        ) : attributes.error ? (
          <ErrorState error={attributes.error} retry={() => attributes.refetch()} />
        ) : attributes.data.length === 0 ? (
          <EmptyState title="No attributes yet">Define one, e.g. customer_id, then give members and service tokens their values.</EmptyState>
        ) : (
          <Table
            caption="Attributes"
            rows={attributes.data}
            rowKey={(a) => a.name}
            columns={[
              { header: "Name", cell: (a) => <span className="mono">{a.name}</span> },
              { header: "Description", cell: (a) => a.description || "—" },
              {
                header: "Actions",
                cell: (a) =>
                  canEdit ? (
                    <ConfirmDialog
                      trigger={
                        <button type="button" className="btn btn-small">
                          Delete {a.name}
                        </button>
                      }
                      title={`Delete ${a.name}?`}
                      description="Every member's and service token's value of it is deleted too; policies reading it then see NULL."
                      confirmLabel="Delete"
                      danger
                      onConfirm={() => remove.mutateAsync(a.name)}
                    />
                  ) : (
                    "—"
                  ),
              },
            ]}
          />
        )}
      </Section>
      {attributes.data && attributes.data.length > 0 && (
        <Section title="Values">
          <AssignValues org={org} attributes={attributes.data} canEdit={canEdit} />
        </Section>
      )}
    </>
  );
}
