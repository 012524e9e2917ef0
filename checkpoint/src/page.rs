//! `GET /`: the overview as one server-rendered HTML page. No JavaScript, nothing fetched from
//! elsewhere: charts are inline SVG (a `<title>` on each bar shows its value on hover), the
//! style is inline, and the window is picked with a plain GET form.

use std::fmt::Write;

use crate::overview::{grouped, Overview, Share};
use crate::validate::COUNTERS;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A bar chart of one value per day, as inline SVG.
/// A bar per day; a partial day (the receiver's current day, still filling up) is drawn pale
/// with a dashed outline and said to be partial, so that it never looks like a collapse.
fn day_chart(title: &str, points: &[(String, u64, bool)]) -> String {
    let (w, h, pad) = (720.0_f64, 160.0_f64, 18.0_f64);
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let latest = points.iter().rev().find(|p| !p.2);
    let partial_note = if points.iter().any(|p| p.2) {
        "; the pale dashed bar is today, still partial"
    } else {
        ""
    };
    let n = points.len().max(1) as f64;
    let slot = w / n;
    let bar = (slot * 0.8).max(0.5);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{} <small>(max {} per day{}{})</small></figcaption><svg viewBox="0 0 {w} {}" width="100%" role="img" aria-label="{}">"#,
        escape(title),
        grouped(max as u64),
        latest.map_or(String::new(), |l| format!(
            "; {}: {}",
            escape(&l.0),
            grouped(l.1)
        )),
        partial_note,
        h + pad,
        escape(title)
    );
    for (i, (day, v, partial)) in points.iter().enumerate() {
        let bh = (*v as f64 / max) * h;
        let style = if *partial {
            r##"fill="#c9daf3" stroke="#3b7dd8" stroke-dasharray="3 2""##
        } else {
            r##"fill="#3b7dd8""##
        };
        let _ = write!(
            svg,
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" {style}><title>{}: {}{}</title></rect>"##,
            i as f64 * slot + (slot - bar) / 2.0,
            h - bh,
            bar,
            bh,
            escape(day),
            grouped(*v),
            if *partial { " (partial)" } else { "" }
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            svg,
            r##"<text x="0" y="{}" font-size="11" fill="#555">{}</text><text x="{w}" y="{}" font-size="11" fill="#555" text-anchor="end">{}</text>"##,
            h + 14.0,
            escape(&first.0),
            h + 14.0,
            escape(&last.0)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A table of shares with CSS bars.
fn share_table(title: &str, shares: &[Share], total: u64) -> String {
    let mut t = format!(
        "<h3>{}</h3><table><tr><th>value</th><th>applications</th><th></th></tr>",
        escape(title)
    );
    for s in shares.iter().take(20) {
        let pct = if total == 0 {
            0.0
        } else {
            s.applications as f64 * 100.0 / total as f64
        };
        let _ = write!(
            t,
            r#"<tr><td>{}</td><td class="n">{}</td><td class="bar"><span style="width:{pct:.1}%"></span> {pct:.0} %</td></tr>"#,
            escape(&s.value),
            grouped(s.applications)
        );
    }
    if shares.len() > 20 {
        let _ = write!(
            t,
            "<tr><td colspan=3>… and {} more</td></tr>",
            shares.len() - 20
        );
    }
    t.push_str("</table>");
    t
}

/// The whole page.
/// `<small>` with the change against the previous window of the same length, if known.
fn compared(now: u64, before: Option<u64>) -> String {
    match before {
        None => String::new(),
        Some(b) if b == now => "<br><small>the same as the window before</small>".to_owned(),
        Some(b) => {
            let sign = if now > b { "+" } else { "−" };
            format!(
                "<br><small>{sign}{} against the window before ({})</small>",
                grouped(now.abs_diff(b)),
                grouped(b)
            )
        }
    }
}

pub fn render(o: &Overview) -> String {
    let total = |k: &str| o.totals.get(k).copied().unwrap_or(0);
    let mut p = String::new();
    let _ = write!(
        p,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>checkpoint: {apps} applications</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#222}}
.cards{{display:flex;flex-wrap:wrap;gap:.75rem}} .card{{border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem;min-width:10rem}}
.card b{{display:block;font-size:1.6rem}} table{{border-collapse:collapse;margin:.5rem 0}} td,th{{padding:.15rem .6rem;text-align:left;border-bottom:1px solid #eee}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} td.bar{{width:16rem}} td.bar span{{display:inline-block;height:.8rem;background:#3b7dd8}}
figure{{margin:1rem 0}} figcaption{{font-weight:600}} small{{color:#666;font-weight:normal}}
</style></head><body>
<h1>Checkpoint</h1>
<form method="get" action="/">Last <input name="days" size="4" value="{days}"> days up to <input name="until" size="10" value="{until}"> <button>show</button></form>
<p>{from} to {until} (UTC days, both included). <a href="/api/overview?days={days}&amp;until={until}">This overview as JSON</a>.</p>
<h2>How many applications</h2>
<div class="cards">
<div class="card"><b>{apps}</b>applications (clusters with a report in the window){apps_was}</div>
<div class="card"><b>{peak}</b>peak instances on one day{peak_was}</div>
<div class="card"><b>{new}</b>new (first active day in the window){new_was}</div>
<div class="card"><b>{ret}</b>returning</div>
</div>"#,
        apps = grouped(o.applications),
        peak = grouped(o.peak_instances),
        new = grouped(o.new_applications),
        ret = grouped(o.returning_applications),
        apps_was = compared(o.applications, o.previous.as_ref().map(|p| p.applications)),
        peak_was = compared(
            o.peak_instances,
            o.previous.as_ref().map(|p| p.peak_instances)
        ),
        new_was = compared(
            o.new_applications,
            o.previous.as_ref().map(|p| p.new_applications)
        ),
        days = o.days,
        from = escape(&o.from),
        until = escape(&o.until),
    );
    let series = |f: &dyn Fn(&crate::overview::Day) -> u64| -> Vec<(String, u64, bool)> {
        o.per_day
            .iter()
            .map(|d| (d.day.clone(), f(d), d.partial))
            .collect()
    };
    p.push_str(&day_chart(
        "Applications reporting per day",
        &series(&|d| d.applications),
    ));
    p.push_str(&day_chart(
        "Instances reporting per day",
        &series(&|d| d.instances),
    ));
    p.push_str(
        "<h3>Instances per application</h3><table><tr><th>instances</th><th>applications</th></tr>",
    );
    for b in &o.instances_per_application {
        let _ = write!(
            p,
            r#"<tr><td class="n">{}</td><td class="n">{}</td></tr>"#,
            b.instances,
            grouped(b.applications)
        );
    }
    p.push_str("</table>");
    p.push_str(&share_table(
        "By electric_version",
        &o.by_electric_version,
        o.applications,
    ));
    p.push_str(&share_table(
        "By pg_version",
        &o.by_pg_version,
        o.applications,
    ));
    p.push_str(&share_table("By OS", &o.by_os, o.applications));
    p.push_str(&share_table("By arch", &o.by_arch, o.applications));
    let _ = write!(
        p,
        r#"<h2>What volume they sync</h2><div class="cards">
<div class="card"><b>{}</b>operations from Postgres</div>
<div class="card"><b>{}</b>operations sent to clients</div>
<div class="card"><b>{}</b>operations from clients</div></div>"#,
        grouped(total("operations_from_pg")),
        grouped(total("operations_sent_to_clients")),
        grouped(total("operations_received_from_clients")),
    );
    p.push_str(&day_chart(
        "Operations from Postgres per day",
        &series(&|d| d.totals.get("operations_from_pg").copied().unwrap_or(0)),
    ));
    p.push_str(&day_chart(
        "Operations sent to clients per day",
        &series(&|d| {
            d.totals
                .get("operations_sent_to_clients")
                .copied()
                .unwrap_or(0)
        }),
    ));
    p.push_str("<h3>Every usage counter, summed over the window</h3><table><tr><th>counter</th><th>total</th></tr>");
    for name in COUNTERS {
        let _ = write!(
            p,
            r#"<tr><td><code>{name}</code></td><td class="n">{}</td></tr>"#,
            grouped(total(name))
        );
    }
    p.push_str("</table><p><small>distinct_clients and distinct_users are sums of per-window estimates: a client seen in several 4-hour windows counts once per window.</small></p>");
    let c = &o.completeness;
    let _ = write!(
        p,
        r#"<h2>How complete this is</h2><table>
<tr><td>reports stored</td><td class="n">{}</td></tr>
<tr><td>usage events dropped by reporters (<code>dropped_events</code>)</td><td class="n">{}</td></tr>
<tr><td>reports dropped by reporters (<code>dropped_reports</code>)</td><td class="n">{}</td></tr>
<tr><td>duplicates refused</td><td class="n">{}</td></tr>
<tr><td>missed windows (an instance's <code>last_reported</code> is not its previous <code>timestamp</code>)</td><td class="n">{}</td></tr>
<tr><td>reports restored from a checkpoint (<code>recovered</code>)</td><td class="n">{}</td></tr>
<tr><td>reports after an unclean stop (<code>after_unclean_stop</code>)</td><td class="n">{}</td></tr>
</table></body></html>"#,
        grouped(c.reports),
        grouped(c.dropped_events),
        grouped(c.dropped_reports),
        grouped(c.duplicates_refused),
        grouped(c.missed_windows),
        grouped(c.recovered),
        grouped(c.after_unclean_stop),
    );
    p
}
