// One invoice, laid out to print (the console's chrome is hidden when printing).
import { Link, useParams } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { useCurrentOrg } from "../../api/org";
import { ErrorState, Loading, PageHeader } from "../../components";
import { money } from "./Usage";
import "../servers/estate.css";

export default function Invoice() {
  const { slug: org, org: orgRow } = useCurrentOrg();
  const { invoiceId = "" } = useParams();
  const invoice = useQuery({
    queryKey: ["org", org, "invoices", invoiceId],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/invoices/{invoice_id}", { params: { path: { org, invoice_id: invoiceId } } })),
  });
  if (invoice.isPending) return <Loading />;
  if (invoice.error) return <ErrorState error={invoice.error} retry={() => invoice.refetch()} />;
  const i = invoice.data;
  return (
    <div className="invoice">
      <PageHeader
        title={`Invoice ${i.period_start} – ${i.period_end}`}
        description={
          <span className="no-print">
            <Link to={`/orgs/${org}/usage`}>Usage and billing</Link>
          </span>
        }
        actions={
          <button type="button" className="btn btn-primary" onClick={() => window.print()}>
            Print
          </button>
        }
      />
      <section className="card">
        <dl className="details">
          <dt>Billed to</dt>
          <dd>
            {orgRow?.name ?? org} <span className="mono muted">({org})</span>
          </dd>
          <dt>Invoice</dt>
          <dd className="mono">{i.id}</dd>
          <dt>Period</dt>
          <dd>
            {i.period_start} to {i.period_end} (exclusive)
          </dd>
          <dt>Plan</dt>
          <dd>{i.plan_id}</dd>
          <dt>Status</dt>
          <dd>{i.status === "final" ? `final, ${i.finalized_at ? new Date(i.finalized_at).toLocaleDateString() : ""}` : "draft"}</dd>
        </dl>
        <div className="table-wrap">
          <table>
            <caption className="sr-only">Invoice lines</caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Description</th>
                <th scope="col" className="num">
                  Quantity
                </th>
                <th scope="col" className="num">
                  Unit price
                </th>
                <th scope="col" className="num">
                  Amount
                </th>
              </tr>
            </thead>
            <tbody>
              {i.lines.map((l) => (
                <tr key={l.line_no}>
                  <td>{l.line_no}</td>
                  <td>{l.description}</td>
                  <td className="num">{l.quantity.toLocaleString()}</td>
                  <td className="num">{money(l.unit_price_millicents / 1000, i.currency, 5)}</td>
                  <td className="num">{money(l.amount_cents, i.currency)}</td>
                </tr>
              ))}
              <tr>
                <th scope="row" colSpan={4} className="num">
                  Total
                </th>
                <td className="num">
                  <strong>{money(i.total_cents, i.currency)}</strong>
                </td>
              </tr>
            </tbody>
          </table>
        </div>
      </section>
    </div>
  );
}
