// A uPlot line chart of one metric over days, one line per series, with a legend and a data table
// for screen readers.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Series } from "../../lib/usageSeries";

const PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#6741d9", "#1098ad", "#f08c00", "#5c940d", "#868e96"];

export function Chart({ title, data, unit }: { title: string; data: Series; unit?: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(280, el.clientWidth);
    const plot = new uPlot(
      {
        width,
        height: 220,
        legend: { show: false },
        scales: { x: { time: true } },
        axes: [{}, { label: unit, size: 56 }],
        series: [{}, ...data.series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false }))],
      },
      [data.x, ...data.series.map((s) => s.values)] as uPlot.AlignedData,
      el,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [data, unit]);
  return (
    <figure style={{ margin: "0 0 16px" }}>
      <figcaption>
        <strong>{title}</strong>
      </figcaption>
      <div ref={box} className="chart" role="img" aria-label={`${title}, ${data.series.length} series over ${data.days.length} days`} />
      <div className="chart-legend">
        {data.series.map((s, i) => (
          <span key={s.label} style={{ ["--swatch" as string]: PALETTE[i % PALETTE.length] }}>
            {s.label}
          </span>
        ))}
      </div>
      <details>
        <summary>{title} as a table</summary>
        <div className="table-wrap" role="region" aria-label={`${title} table`} tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">Day</th>
                {data.series.map((s) => (
                  <th scope="col" key={s.label} className="num">
                    {s.label}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {data.days.map((d, i) => (
                <tr key={d}>
                  <td>{d}</td>
                  {data.series.map((s) => (
                    <td key={s.label} className="num">
                      {s.values[i] ?? "—"}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}
