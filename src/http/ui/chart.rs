//! Server-rendered SVG charts: messages per hour stacked by verdict, and a result bar per
//! method. Plain markup with presentation attributes (no script, no inline style), so the
//! page works offline under the dashboard's Content-Security-Policy.

use super::html::esc;
use crate::store::{HourCount, MethodCounts};
use std::fmt::Write;

/// The verdicts in stacking order (bottom first), with their colours.
const VERDICTS: [(&str, &str); 4] = [
    ("accept", "#43a047"),
    ("quarantine", "#f9a825"),
    ("tempfail", "#1e88e5"),
    ("reject", "#e53935"),
];
const OTHER: &str = "#9e9e9e";

const HOUR_MS: i64 = 3_600_000;

/// Messages per hour for `hours` hours starting at `first_hour` (Unix ms, an hour's start),
/// each bar stacked by verdict. Every bar segment carries `data-verdict` and `data-count`,
/// and a `<title>` for a hover tooltip.
pub fn hourly(counts: &[HourCount], first_hour: i64, hours: usize) -> String {
    let (width, height) = (960.0, 260.0);
    let (left, right, top, bottom) = (44.0, 10.0, 12.0, 28.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let mut per_hour = vec![Vec::<(&str, u64)>::new(); hours];
    for c in counts {
        let i = (c.hour - first_hour).div_euclid(HOUR_MS);
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| per_hour.get_mut(i)) {
            slot.push((c.verdict.as_str(), c.count));
        }
    }
    let peak = per_hour
        .iter()
        .map(|h| h.iter().map(|c| c.1).sum::<u64>())
        .max()
        .unwrap_or(0);
    // Four grid steps of a readable size (1, 2, 5 × 10ⁿ each), so the labels are whole.
    let scale_max = 4 * nice_ceiling(peak.max(1).div_ceil(4));
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg id=\"hourly-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"Messages per hour by verdict\">"
    );
    // Grid lines and y labels: 0, half, max.
    for step in 0..=4 {
        let value = scale_max * step / 4;
        let y = top + plot_h - plot_h * step as f64 / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e6eaf0\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value}</text>",
            width - right,
            left - 6.0,
            y + 4.0
        );
    }
    let slot = plot_w / hours.max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    for (i, stack) in per_hour.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let hour = first_hour + i as i64 * HOUR_MS;
        let label = hour_label(hour);
        let mut y = top + plot_h;
        let mut ordered: Vec<(&str, u64, &str)> = VERDICTS
            .iter()
            .filter_map(|(v, colour)| stack.iter().find(|c| c.0 == *v).map(|c| (*v, c.1, *colour)))
            .collect();
        for (v, n) in stack {
            if !VERDICTS.iter().any(|k| k.0 == *v) {
                ordered.push((v, *n, OTHER));
            }
        }
        for (verdict, n, colour) in ordered {
            let h = plot_h * n as f64 / scale_max as f64;
            y -= h;
            let verdict = esc(verdict);
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" \
                 fill=\"{colour}\" data-hour=\"{label}\" data-verdict=\"{verdict}\" data-count=\"{n}\">\
                 <title>{label} UTC: {n} {verdict}</title></rect>"
            );
        }
        if i % 3 == 0 || i + 1 == hours {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                height - 10.0,
                &label[11..16]
            );
        }
    }
    let _ = write!(
        svg,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#8a94a6\"/></svg>",
        width - right,
        y = top + plot_h
    );
    svg
}

/// The legend under [`hourly`].
pub fn legend() -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (v, _) in VERDICTS {
        let _ = write!(out, "<span><span class=\"swatch sw-{v}\"></span>{v}</span>");
    }
    out.push_str("</div>");
    out
}

/// One horizontal bar of a method's results: pass, failures, the rest.
pub fn results_bar(m: &MethodCounts) -> String {
    let total = m.total().max(1) as f64;
    let (width, height) = (300.0, 14.0);
    let mut svg = format!(
        "<svg class=\"rate\" id=\"bar-{}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\">",
        m.method
    );
    let mut x = 0.0;
    for (result, n) in &m.results {
        let w = width * *n as f64 / total;
        let colour = match result.as_str() {
            "pass" => "#43a047",
            "fail" | "permerror" => "#e53935",
            "softfail" | "temperror" => "#f9a825",
            _ => "#b0b8c4",
        };
        let result = esc(result);
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"{height}\" fill=\"{colour}\" \
             data-result=\"{result}\" data-count=\"{n}\"><title>{result}: {n}</title></rect>"
        );
        x += w;
    }
    svg.push_str("</svg>");
    svg
}

/// `2026-12-06T13:00` for an hour's start.
fn hour_label(ms: i64) -> String {
    crate::dates::format_rfc3339(ms)[..16].to_string()
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `n` (a readable axis maximum).
fn nice_ceiling(n: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for m in [1, 2, 5] {
            if base.saturating_mul(m) >= n {
                return base * m;
            }
        }
        base = base.saturating_mul(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_by_verdict_and_escape_unknown_ones() {
        let first = 100 * HOUR_MS;
        let counts = [
            HourCount {
                hour: first,
                verdict: "reject".into(),
                count: 3,
            },
            HourCount {
                hour: first,
                verdict: "accept".into(),
                count: 7,
            },
            HourCount {
                hour: first + 2 * HOUR_MS,
                verdict: "<x>".into(),
                count: 1,
            },
        ];
        let svg = hourly(&counts, first, 24);
        assert!(svg.starts_with("<svg id=\"hourly-chart\""));
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        // accept first: at the bottom of the stack.
        assert!(svg.find("data-verdict=\"accept\"") < svg.find("data-verdict=\"reject\""));
        assert!(svg.contains("data-verdict=\"&lt;x&gt;\""));
        assert!(!svg.contains("<x>"));
        assert_eq!(nice_ceiling(10), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(0), 1);
    }
}
