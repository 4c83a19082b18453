//! HTML building: the one escaping function every value from the store goes through, and the
//! page frame (head, navigation, logout form). Pages are `format!`ed strings: markup written
//! here is trusted, everything else passes [`esc`] (or [`Text`], which calls it on display).

use std::fmt::{self, Display, Write};

/// Escapes text for HTML element content and double-quoted attribute values: the five
/// characters that can end either (`&`, `<`, `>`, `"`, `'`).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
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

/// Untrusted text that escapes itself when formatted: `format!("<td>{}</td>", Text(v))`.
pub struct Text<'a>(pub &'a str);

impl Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&esc(self.0))
    }
}

/// A JSON value's text (strings unquoted), escaped; `—` for null or absent.
pub fn val(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// Percent-encodes a query parameter value (links built from store values).
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
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
const NAV: [(&str, &str); 6] = [
    ("/ui/", "Overview"),
    ("/ui/verdicts", "Verdicts"),
    ("/ui/reports", "Reports received"),
    ("/ui/reports/sent", "Reports sent"),
    ("/ui/reports/failures", "Failure reports"),
    ("/ui/keys", "Signing keys"),
];

/// A whole page: `title` is escaped, `body` is trusted markup; `current` marks the
/// navigation entry; `nav` false for the login page.
pub fn page(title: &str, current: &str, nav: bool, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · authmilter</title><link rel=\"stylesheet\" href=\"/ui/static/app.css\">\
         </head><body><header><span class=\"brand\">authmilter</span>",
        esc(title)
    );
    if nav {
        out.push_str("<nav>");
        for (path, label) in NAV {
            let class = if path == current {
                " class=\"current\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"{path}\"{class}>{label}</a>");
        }
        out.push_str(
            "</nav><form method=\"post\" action=\"/ui/logout\" class=\"logout\">\
             <button type=\"submit\">Log out</button></form>",
        );
    }
    let _ = write!(
        out,
        "</header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    out
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
    fn escaping_covers_element_and_attribute_breakouts() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(format!("{}", Text("a<b")), "a&lt;b");
        assert_eq!(url("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
        assert_eq!(val(&serde_json::json!("<i>")), "&lt;i&gt;");
        assert_eq!(val(&serde_json::Value::Null), "—");
    }
}
