// One endpoint: its URL, copy-paste setup for Claude Code, VS Code and Cursor, the tools it serves,
// and the playground.
import * as Tabs from "@radix-ui/react-tabs";
import { Link, useNavigate, useParams } from "react-router";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { ConfirmDialog, CopyButton, EmptyState, ErrorState, Loading, PageHeader } from "../../components";
import { Section } from "../servers/common";
import { Playground } from "./Playground";

function ClientSetup({ org, endpointId }: { org: string; endpointId: string }) {
  const config = useQuery({
    queryKey: ["org", org, "endpoints", endpointId, "client-config"],
    queryFn: () =>
      unwrap(
        api.GET("/api/v1/orgs/{org}/endpoints/{endpoint_id}/client-config", { params: { path: { org, endpoint_id: endpointId } } }),
      ),
  });
  if (config.isPending) return <Loading />;
  if (config.error) return <ErrorState error={config.error} retry={() => config.refetch()} />;
  const vscode = JSON.stringify(config.data.vscode, null, 2);
  const cursor = JSON.stringify(config.data.cursor, null, 2);
  return (
    <Tabs.Root defaultValue="claude">
      <Tabs.List className="tabs-list" aria-label="MCP client">
        <Tabs.Trigger className="tabs-trigger" value="claude">
          Claude Code
        </Tabs.Trigger>
        <Tabs.Trigger className="tabs-trigger" value="vscode">
          VS Code
        </Tabs.Trigger>
        <Tabs.Trigger className="tabs-trigger" value="cursor">
          Cursor
        </Tabs.Trigger>
      </Tabs.List>
      <Tabs.Content value="claude">
        <p>Run in a terminal; Claude Code signs you in through Gatehouse the first time it connects.</p>
        <pre className="code" data-testid="claude-code-line">{config.data.claude_code}</pre>
        <CopyButton text={config.data.claude_code} label="Copy command" />
      </Tabs.Content>
      <Tabs.Content value="vscode">
        <p>
          Add to <span className="mono">.vscode/mcp.json</span>:
        </p>
        <pre className="code">{vscode}</pre>
        <CopyButton text={vscode} label="Copy VS Code configuration" />
      </Tabs.Content>
      <Tabs.Content value="cursor">
        <p>
          Add to <span className="mono">~/.cursor/mcp.json</span> (or <span className="mono">.cursor/mcp.json</span> in a project):
        </p>
        <pre className="code">{cursor}</pre>
        <CopyButton text={cursor} label="Copy Cursor configuration" />
      </Tabs.Content>
    </Tabs.Root>
  );
}

export default function EndpointDetail() {
  const { slug: org, role } = useCurrentOrg();
  const { endpointId = "" } = useParams();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const endpoint = useQuery({
    queryKey: ["org", org, "endpoints", endpointId],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/endpoints/{endpoint_id}", { params: { path: { org, endpoint_id: endpointId } } })),
  });
  if (endpoint.isPending) return <Loading />;
  if (endpoint.error) return <ErrorState error={endpoint.error} retry={() => endpoint.refetch()} />;
  const e = endpoint.data;
  return (
    <>
      <PageHeader
        title={e.name}
        description={
          <>
            <Link to={`/orgs/${org}/endpoints`}>Endpoints</Link> / <span className="mono">{e.slug}</span>
          </>
        }
        actions={
          roleAtLeast(role, "admin") ? (
            <ConfirmDialog
              trigger={
                <button type="button" className="btn btn-danger">
                  Delete
                </button>
              }
              title={`Delete ${e.name}?`}
              description="Its URL stops serving and its tokens stop working."
              confirmLabel="Delete endpoint"
              danger
              typeToConfirm={e.slug}
              onConfirm={async () => {
                await unwrap(api.DELETE("/api/v1/orgs/{org}/endpoints/{endpoint_id}", { params: { path: { org, endpoint_id: e.id } } }));
                await qc.invalidateQueries({ queryKey: ["org", org, "endpoints"] });
                navigate(`/orgs/${org}/endpoints`);
              }}
            />
          ) : undefined
        }
      />
      <Section title="URL">
        <p className="row-actions">
          <span className="mono" data-testid="endpoint-url">
            {e.url}
          </span>
          <CopyButton text={e.url} label="Copy URL" />
        </p>
        {e.description && <p>{e.description}</p>}
      </Section>
      <Section title="Connect a client">
        <ClientSetup org={org} endpointId={e.id} />
      </Section>
      <Section title="Tools served">
        {e.tools.length === 0 ? (
          <EmptyState title="No tools served">Approve tools of the endpoint's servers to serve them here.</EmptyState>
        ) : (
          <ul>
            {e.tools.map((t) => (
              <li key={t.tool_id} className="mono">
                {t.exposed_name}
              </li>
            ))}
          </ul>
        )}
      </Section>
      <Section title="Playground">
        <Playground org={org} endpointId={e.id} />
      </Section>
    </>
  );
}
