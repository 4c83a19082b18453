//! HTML building through maud: the page frame (head, navigation, logout form) and the small
//! pieces the pages share. maud's `html!` escapes every spliced value (`(value)`), in element
//! content and attribute values alike; the only way to put raw markup on a page is maud's
//! `PreEscaped`, which this dashboard never uses. Values reach links through
//! [`url_param`] (the `percent-encoding` crate), then maud's attribute escaping.

use maud::{html, Markup, Render, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, PercentEncode, NON_ALPHANUMERIC};
use serde_json::Value;
use std::borrow::Cow;
use std::ops::Range;

/// What a query parameter value or cookie value keeps as is: RFC 3986's unreserved
/// characters; everything else is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query parameter value (links built from store values) or a cookie value.
pub fn url_param(text: &str) -> PercentEncode<'_> {
    utf8_percent_encode(text, COMPONENT)
}

/// A JSON value's text (strings unquoted), for maud to escape; `—` for null or absent.
pub fn text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

/// The items one per line (`<br>` between them), each escaped.
pub fn lines<T: Render>(items: impl IntoIterator<Item = T>) -> Markup {
    html! {
        @for (i, item) in items.into_iter().enumerate() {
            @if i > 0 { br; }
            (item)
        }
    }
}

/// The items separated by commas, each escaped.
pub fn listed<T: Render>(items: impl IntoIterator<Item = T>) -> Markup {
    html! {
        @for (i, item) in items.into_iter().enumerate() {
            @if i > 0 { ", " }
            (item)
        }
    }
}

/// A table's header row; the columns in `numeric` are right-aligned (`class="num"`).
pub fn head(cells: &[&str], numeric: Range<usize>) -> Markup {
    html! {
        tr {
            @for (i, cell) in cells.iter().enumerate() {
                th class=[numeric.contains(&i).then_some("num")] { (cell) }
            }
        }
    }
}

/// One record's fields, a row each (name, value), as the detail pages show them.
pub fn fields<'a>(rows: impl IntoIterator<Item = (&'a str, Markup)>) -> Markup {
    html! {
        section class="card" {
            table class="fields" id="fields" {
                @for (name, value) in rows {
                    tr { th { (name) } td { (value) } }
                }
            }
        }
    }
}

/// `12.5 %`, or `—` without a denominator.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "—".into()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

/// The navigation entries: (path, label).
const NAV: [(&str, &str); 7] = [
    ("/ui/", "Overview"),
    ("/ui/verdicts", "Verdicts"),
    ("/ui/reports", "Reports received"),
    ("/ui/reports/sent", "Reports sent"),
    ("/ui/reports/failures", "Failure reports"),
    ("/ui/reports/readiness", "Readiness"),
    ("/ui/keys", "Signing keys"),
];

/// A whole page around `body`; `current` marks the navigation entry; `nav` false for the
/// login page.
pub fn page(title: &str, current: &str, nav: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · authmilter" }
                link rel="stylesheet" href="/ui/static/app.css";
            }
            body {
                header {
                    span class="brand" { "authmilter" }
                    @if nav {
                        nav {
                            @for (path, label) in NAV {
                                a href=(path) class=[(path == current).then_some("current")] {
                                    (label)
                                }
                            }
                        }
                        form method="post" action="/ui/logout" class="logout" {
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The style sheet, served as a file: the Content-Security-Policy allows no inline style.
pub const CSS: &str = r#"
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d2330; background: #f4f6f9; }
header { display: flex; align-items: center; gap: 24px; padding: 10px 24px;
         background: #1f2a3c; color: #fff; }
header .brand { font-weight: 700; font-size: 17px; letter-spacing: .3px; }
header nav { display: flex; gap: 4px; flex: 1; }
header nav a { color: #cdd6e4; text-decoration: none; padding: 6px 12px; border-radius: 4px; }
header nav a:hover { background: #2c3a52; color: #fff; }
header nav a.current { background: #3b4d6b; color: #fff; }
header form.logout button { background: transparent; color: #cdd6e4; border: 1px solid #51627f;
         border-radius: 4px; padding: 5px 12px; cursor: pointer; }
main { padding: 18px 24px 40px; max-width: 1280px; }
h1 { font-size: 22px; margin: 4px 0 16px; }
h2 { font-size: 17px; margin: 0 0 10px; }
section.card { background: #fff; border: 1px solid #dde3ea; border-radius: 6px;
               padding: 14px 18px; margin-bottom: 18px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 18px; }
.grid section.card { margin-bottom: 0; }
.figures { display: flex; gap: 28px; flex-wrap: wrap; margin-bottom: 18px; }
.figure { background: #fff; border: 1px solid #dde3ea; border-radius: 6px; padding: 10px 18px;
          min-width: 170px; }
.figure .value { font-size: 26px; font-weight: 600; }
.figure .label { color: #5a6578; font-size: 13px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e6eaf0;
         vertical-align: top; }
th { color: #5a6578; font-weight: 600; font-size: 13px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.fields th { width: 190px; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
pre { background: #f0f3f7; padding: 10px; border-radius: 4px; white-space: pre-wrap;
      word-break: break-all; margin: 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         font-weight: 600; background: #e3e7ee; color: #333; }
.r-pass, .v-accept { background: #d6f0da; color: #1b5e20; }
.r-fail, .r-permerror, .v-reject { background: #fbdada; color: #8e1b1b; }
.r-softfail, .r-temperror, .v-quarantine { background: #fdf0c8; color: #7a5600; }
.v-tempfail { background: #d8e6f8; color: #0d47a1; }
.legend { display: flex; gap: 16px; font-size: 13px; margin-top: 6px; }
.legend .swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
                  margin-right: 5px; vertical-align: -1px; }
.sw-accept { background: #43a047; } .sw-quarantine { background: #f9a825; }
.sw-tempfail { background: #1e88e5; } .sw-reject { background: #e53935; }
.sw-other { background: #9e9e9e; }
svg { display: block; max-width: 100%; height: auto; }
#hourly-chart { width: 100%; }
svg text { font: 11px system-ui, sans-serif; fill: #5a6578; }
form.search { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr));
              gap: 10px 16px; align-items: end; }
form.search label, form.login label { display: block; font-size: 13px; color: #5a6578; }
input, select { width: 100%; padding: 6px 8px; border: 1px solid #c4ccd8; border-radius: 4px;
                font: inherit; background: #fff; }
button.primary { background: #2f5fa7; color: #fff; border: 0; border-radius: 4px;
                 padding: 7px 16px; font: inherit; cursor: pointer; }
form.login { max-width: 380px; display: grid; gap: 12px; }
.error { background: #fbdada; color: #8e1b1b; padding: 8px 12px; border-radius: 4px;
         margin-bottom: 12px; }
.muted { color: #6b7688; font-size: 13px; }
.pager { margin-top: 12px; }
a { color: #2f5fa7; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_text_cannot_break_out_of_elements_or_attributes() {
        let evil = r#"<script>alert("x")</script> & "><img src=x>"#;
        let markup = html! { p title=(evil) { (evil) } }.into_string();
        assert_eq!(
            markup,
            "<p title=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;&gt;&lt;img src=x&gt;\">\
             &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;&gt;&lt;img src=x&gt;</p>"
        );
        assert_eq!(
            url_param("a b&c=<d>é").to_string(),
            "a%20b%26c%3D%3Cd%3E%C3%A9"
        );
        assert_eq!(url_param("A-z0._~").to_string(), "A-z0._~");
        assert_eq!(text(&serde_json::json!("<i>")), "<i>");
        assert_eq!(text(&serde_json::json!(3)), "3");
        assert_eq!(text(&Value::Null), "—");
        assert_eq!(lines(["a<", "b"]).into_string(), "a&lt;<br>b");
        assert_eq!(listed(["a<", "b"]).into_string(), "a&lt;, b");
        assert_eq!(
            head(&["A", "B", "C", ""], 1..2).into_string(),
            "<tr><th>A</th><th class=\"num\">B</th><th>C</th><th></th></tr>"
        );
        let page = page("T<", "/ui/keys", true, html! { "x" }).into_string();
        assert!(
            page.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{page}"
        );
        assert!(page.contains("<title>T&lt; · authmilter</title>"), "{page}");
        assert!(page.contains("<a href=\"/ui/keys\" class=\"current\">Signing keys</a>"));
        assert!(page.contains("<a href=\"/ui/\">Overview</a>"));
        assert!(page.contains("<main><h1>T&lt;</h1>x</main>"), "{page}");
    }
}
