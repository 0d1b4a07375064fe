import { useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { orgsQuery } from "../../api/org";
import { Field, FormAlert, PageHeader, formErrors } from "../../components";

/** A slug suggestion from a name: lower case, ASCII letters and digits, single dashes. */
export function slugify(name: string): string {
  return name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
}

export default function CreateOrg() {
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [slugEdited, setSlugEdited] = useState(false);
  const navigate = useNavigate();
  const qc = useQueryClient();
  const create = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/orgs", { body: { name, slug } })),
    onSuccess: async (org) => {
      await qc.invalidateQueries({ queryKey: orgsQuery.queryKey });
      navigate(`/orgs/${org.slug}`);
    },
  });
  const errors = formErrors(create.error, ["name", "slug"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate();
  }
  return (
    <>
      <PageHeader title="Create an org" description="You become its owner. You can invite your team next." />
      <form className="card" onSubmit={submit} noValidate style={{ maxWidth: 560 }}>
        <FormAlert message={errors.form} />
        <Field label="Name" error={errors.field.name}>
          <input
            value={name}
            onChange={(e) => {
              setName(e.target.value);
              if (!slugEdited) setSlug(slugify(e.target.value));
            }}
            autoComplete="organization"
          />
        </Field>
        <Field label="Slug" hint="Used in URLs: console pages and MCP endpoint addresses." error={errors.field.slug}>
          <input
            value={slug}
            onChange={(e) => {
              setSlug(e.target.value);
              setSlugEdited(true);
            }}
            autoComplete="off"
            spellCheck={false}
          />
        </Field>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          {create.isPending ? "Creating…" : "Create org"}
        </button>
      </form>
    </>
  );
}
