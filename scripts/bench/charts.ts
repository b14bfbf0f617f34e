/**
 * SVG charts with vega-lite, rendered in Node by vega's headless View
 * (renderer 'none' + toSVG(): no canvas, no browser, no native deps).
 */
import * as vega from 'vega'
import * as vl from 'vega-lite'
import type { TopLevelSpec } from 'vega-lite'
import { linkRate, LINKS, type Link } from './plan.js'
import type { Measurement } from './subjects.js'

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

const MB = 1e6

/** Sequential workloads at --link unlimited: MB/s against jobs, one line per subject, a panel per family. */
export function jobsChartSpec(ms: Measurement[]): TopLevelSpec | null {
  const rows = ms
    .filter((m) => m.status === 'ok' && m.run.link === 'unlimited' && m.run.workload.rw.length <= 5 /* read|write */)
    .map((m) => ({
      family: m.run.workload.id.replace(/-j\d+(-q)?$/, ''),
      jobs: m.run.workload.jobs,
      // Queue-file runs (-q) are a point of their own next to the subject's line.
      subject: m.run.workload.queueFiles ? `${m.run.subject} (queue files)` : m.run.subject,
      mbps: Math.round((m.bw ?? 0) / MB),
    }))
  if (!rows.length) return null
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Throughput vs jobs (--link unlimited, psync, 4 targets)',
    data: { values: rows },
    facet: { field: 'family', type: 'nominal', title: null },
    columns: 4,
    spec: {
      width: 200,
      height: 160,
      layer: [
        { mark: { type: 'line', point: true } },
      ],
      encoding: {
        x: { field: 'jobs', type: 'ordinal', title: 'fio jobs', sort: 'ascending', axis: { labelAngle: 0 } },
        y: { field: 'mbps', type: 'quantitative', title: 'MB/s' },
        color: {
          field: 'subject',
          type: 'nominal',
          title: 'subject',
          sort: ['fcfs', 'fcfs-user', 'fcfs-pc', 'c', 'ceiling', 'peer', 'direct', 'fcfs (queue files)', 'fcfs-user (queue files)', 'c (queue files)', 'ceiling (queue files)'],
        },
        tooltip: [{ field: 'subject' }, { field: 'jobs' }, { field: 'mbps' }],
      },
    },
    resolve: { scale: { y: 'independent' } },
  } as TopLevelSpec
}

/** The ratios the report's table gives per workload, where both sides ran: [label, numerator, denominator]. */
export const RATIOS = [
  ['fcfs/c', 'fcfs', 'c'],
  ['fcfs/ceiling', 'fcfs', 'ceiling'],
  ['fcfs-user/fcfs', 'fcfs-user', 'fcfs'],
] as const

/** fcfs/c, fcfs/ceiling and fcfs-user/fcfs per workload at --link unlimited, as bars, with a rule at 1. */
export function ratioChartSpec(ms: Measurement[]): TopLevelSpec | null {
  const bw = new Map<string, number>()
  for (const m of ms) if (m.status === 'ok' && m.run.link === 'unlimited' && m.bw) bw.set(`${m.run.subject}/${m.run.workload.id}`, m.bw)
  const workloads = [...new Set(ms.filter((m) => m.run.link === 'unlimited').map((m) => m.run.workload.id))]
  const rows: Array<{ workload: string; ratio: string; value: number }> = []
  for (const w of workloads) {
    for (const [label, a, b] of RATIOS) {
      const x = bw.get(`${a}/${w}`)
      const y = bw.get(`${b}/${w}`)
      if (x !== undefined && y !== undefined) rows.push({ workload: w, ratio: label, value: Math.round((x / y) * 100) / 100 })
    }
  }
  if (!rows.length) return null
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Ratios per workload (--link unlimited; 1 = level, the rule)',
    width: Math.max(360, 18 * rows.length),
    height: 260,
    layer: [
      {
        data: { values: rows },
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'workload', type: 'nominal', sort: workloads, title: null, axis: { labelAngle: -45, labelLimit: 260 } },
          xOffset: { field: 'ratio', type: 'nominal', sort: RATIOS.map((r) => r[0]) },
          y: { field: 'value', type: 'quantitative', title: 'ratio' },
          color: { field: 'ratio', type: 'nominal', title: null, sort: RATIOS.map((r) => r[0]), legend: { orient: 'top' } },
          tooltip: [{ field: 'workload' }, { field: 'ratio' }, { field: 'value' }],
        },
      },
      { data: { values: [{ y: 1 }] }, mark: { type: 'rule', color: 'black', strokeDash: [5, 4] }, encoding: { y: { field: 'y', type: 'quantitative' } } },
    ],
  } as TopLevelSpec
}

/** fcfs (and direct) against the link speed, with the modelled link rate as a dashed line. */
export function linkChartSpec(ms: Measurement[]): TopLevelSpec | null {
  const order = LINKS as readonly string[]
  const linked = ms.filter((m) => m.status === 'ok' && (m.run.subject === 'fcfs' || m.run.subject === 'direct'))
  const links = new Set(linked.filter((m) => m.run.link !== 'unlimited').map((m) => m.run.link))
  if (!links.size) return null
  const families = new Set(linked.filter((m) => m.run.link !== 'unlimited').map((m) => m.run.workload.id))
  const rows: Array<{ link: string; series: string; mbps: number; modelled: boolean }> = []
  // Runs at unlimited are drawn at the right end for comparison (no modelled rate there).
  for (const m of linked) {
    if (!families.has(m.run.workload.id)) continue
    rows.push({ link: m.run.link, series: `${m.run.subject} ${m.run.workload.id}`, mbps: Math.round((m.bw ?? 0) / MB), modelled: false })
  }
  for (const l of links) rows.push({ link: l, series: 'modelled link rate', mbps: linkRate(l as Link)! / MB, modelled: true })
  const domain = order.filter((l) => links.has(l as Link) || rows.some((r) => r.link === l))
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Throughput vs link speed (dashed black: modelled payload rate)',
    width: 520,
    height: 300,
    data: { values: rows },
    encoding: {
      x: { field: 'link', type: 'ordinal', sort: domain, title: '--link', axis: { labelAngle: 0 } },
      y: { field: 'mbps', type: 'quantitative', scale: { type: 'log' }, title: 'MB/s (log)' },
      tooltip: [{ field: 'series' }, { field: 'link' }, { field: 'mbps' }],
    },
    layer: [
      {
        transform: [{ filter: '!datum.modelled' }],
        mark: { type: 'line', point: true },
        encoding: { color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom', columns: 2, labelLimit: 320 } } },
      },
      {
        transform: [{ filter: 'datum.modelled' }],
        mark: { type: 'line', color: 'black', strokeDash: [5, 4], strokeWidth: 1.5 },
      },
    ],
  } as TopLevelSpec
}
