//! Server-rendered SVG charts: messages per hour stacked by verdict, and a result bar per
//! method. Plain markup with presentation attributes (no script, no inline style), so the
//! page works offline under the dashboard's Content-Security-Policy.

use crate::store::{HourCount, MethodCounts};
use maud::{html, Markup};

/// The verdicts in stacking order (bottom first), with their colours.
const VERDICTS: [(&str, &str); 4] = [
    ("accept", "#43a047"),
    ("quarantine", "#f9a825"),
    ("tempfail", "#1e88e5"),
    ("reject", "#e53935"),
];
const OTHER: &str = "#9e9e9e";

const HOUR_MS: i64 = 3_600_000;

/// A coordinate with one decimal, as the charts write them.
fn at(v: f64) -> String {
    format!("{v:.1}")
}

/// Messages per hour for `hours` hours starting at `first_hour` (Unix ms, an hour's start),
/// each bar stacked by verdict. Every bar segment carries `data-verdict` and `data-count`,
/// and a `<title>` for a hover tooltip.
pub fn hourly(counts: &[HourCount], first_hour: i64, hours: usize) -> Markup {
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
    let slot = plot_w / hours.max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let base = top + plot_h;
    // Each hour: its bar's left edge, its label, and its segments bottom up (y, height).
    let columns: Vec<(f64, String, Vec<Segment>)> = per_hour
        .iter()
        .enumerate()
        .map(|(i, stack)| {
            let mut y = base;
            let segments = stacking(stack)
                .into_iter()
                .map(|(verdict, n, colour)| {
                    let h = plot_h * n as f64 / scale_max as f64;
                    y -= h;
                    Segment {
                        verdict,
                        n,
                        colour,
                        y,
                        h,
                    }
                })
                .collect();
            let x = left + slot * i as f64 + (slot - bar) / 2.0;
            (x, hour_label(first_hour + i as i64 * HOUR_MS), segments)
        })
        .collect();
    // SVG is foreign content in HTML: its empty elements are closed explicitly (`{}`), as a
    // start tag without `/>` would hold the elements after it as children.
    html! {
        svg id="hourly-chart" xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) role="img"
            aria-label="Messages per hour by verdict" {
            // Grid lines and y labels: 0, a quarter, ..., max.
            @for step in 0..=4u64 {
                @let y = top + plot_h - plot_h * step as f64 / 4.0;
                line x1=(left) x2=(width - right) y1=(at(y)) y2=(at(y)) stroke="#e6eaf0" {}
                text x=(left - 6.0) y=(at(y + 4.0)) text-anchor="end" { (scale_max * step / 4) }
            }
            @for (i, (x, label, segments)) in columns.iter().enumerate() {
                @for s in segments {
                    rect class="bar" x=(at(*x)) y=(at(s.y)) width=(at(bar)) height=(at(s.h))
                        fill=(s.colour) data-hour=(label) data-verdict=(s.verdict)
                        data-count=(s.n) {
                        title { (label) " UTC: " (s.n) " " (s.verdict) }
                    }
                }
                @if i % 3 == 0 || i + 1 == hours {
                    text x=(at(x + bar / 2.0)) y=(height - 10.0) text-anchor="middle" {
                        (&label[11..16])
                    }
                }
            }
            line x1=(left) x2=(width - right) y1=(at(base)) y2=(at(base)) stroke="#8a94a6" {}
        }
    }
}

/// One verdict's part of an hour's bar.
struct Segment<'a> {
    verdict: &'a str,
    n: u64,
    colour: &'static str,
    /// Top edge and height.
    y: f64,
    h: f64,
}

/// One hour's counts in stacking order: the known verdicts first, then any other.
fn stacking<'a>(stack: &[(&'a str, u64)]) -> Vec<(&'a str, u64, &'static str)> {
    let mut ordered: Vec<(&str, u64, &str)> = VERDICTS
        .iter()
        .filter_map(|(v, colour)| stack.iter().find(|c| c.0 == *v).map(|c| (*v, c.1, *colour)))
        .collect();
    for (v, n) in stack {
        if !VERDICTS.iter().any(|k| k.0 == *v) {
            ordered.push((v, *n, OTHER));
        }
    }
    ordered
}

/// The legend under [`hourly`].
pub fn legend() -> Markup {
    html! {
        div class="legend" {
            @for (v, _) in VERDICTS {
                span { span class={ "swatch sw-" (v) } {} (v) }
            }
        }
    }
}

/// One horizontal bar of a method's results: pass, failures, the rest.
pub fn results_bar(m: &MethodCounts) -> Markup {
    let total = m.total().max(1) as f64;
    let (width, height) = (300.0, 14.0);
    let mut x = 0.0;
    // Each result with its left edge and width.
    let parts: Vec<(&str, u64, f64, f64)> = m
        .results
        .iter()
        .map(|(result, n)| {
            let w = width * *n as f64 / total;
            x += w;
            (result.as_str(), *n, x - w, w)
        })
        .collect();
    html! {
        svg class="rate" id={ "bar-" (m.method) } xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) role="img" {
            @for (result, n, x, w) in parts {
                @let colour = match result {
                    "pass" => "#43a047",
                    "fail" | "permerror" => "#e53935",
                    "softfail" | "temperror" => "#f9a825",
                    _ => "#b0b8c4",
                };
                rect x=(at(x)) y="0" width=(at(w)) height=(height) fill=(colour)
                    data-result=(result) data-count=(n) {
                    title { (result) ": " (n) }
                }
            }
        }
    }
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
        let svg = hourly(&counts, first, 24).into_string();
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
