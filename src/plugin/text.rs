//! Text helpers shared by the plugin's views: escaping user text for a terminal and for Markdown,
//! aligned tables, and human times and durations.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// User text made safe for a terminal: control characters (ESC, CR, BEL, ...) would let a title
/// rewrite the screen or forge lines, so each becomes U+FFFD; newlines and tabs become spaces so one
/// field stays on one line. Long text is cut at `max` characters with an ellipsis.
pub fn term(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        out.push(match c {
            '\n' | '\t' => ' ',
            c if c.is_control() || is_bidi(c) => '\u{FFFD}',
            c => c,
        });
    }
    out
}

/// Bidirectional overrides reorder what a terminal shows ("Trojan source").
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// [`term`] with the usual bound for a table cell.
pub fn cell(text: &str) -> String {
    term(text, 80)
}

/// User text inside a Markdown paragraph or table cell: every character Markdown could read as
/// syntax is backslash-escaped, HTML is neutralised, and control characters go as in [`term`].
/// Newlines are kept only when `multiline` (never inside a table row).
pub fn markdown(text: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '>' | '!' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '&' => out.push_str("&amp;"),
            '\n' if multiline => out.push('\n'),
            '\n' | '\t' | '\r' => out.push(' '),
            c if c.is_control() || is_bidi(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Columns aligned by hand: the views are small and fixed, which no table crate would improve on.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// A row of already-escaped cells (see [`cell`]).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, three spaces between columns, no trailing blanks.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(width(c));
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                line.push_str(c);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(widths[i].saturating_sub(width(c)) + 3));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A span as kubectl prints ages: its two largest units (`3d4h`, `5m10s`, `42s`).
pub fn span(d: SignedDuration) -> String {
    let secs = d.as_secs();
    let sign = if secs < 0 { "-" } else { "" };
    let mut rest = secs.unsigned_abs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size && parts.len() < 2 {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            break;
        }
    }
    if parts.is_empty() {
        return "0s".into();
    }
    format!("{sign}{}", parts.concat())
}

/// Time from `then` to `now`, as [`span`].
pub fn age(then: Option<&Time>, now: Timestamp) -> String {
    then.map_or_else(|| "-".into(), |t| span(now.duration_since(t.0)))
}

/// An RFC 3339 time to the second, or `-`.
pub fn when(t: Option<&Time>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.0.round(jiff::Unit::Second).unwrap_or(t.0).to_string(),
    )
}

/// A number with at most `digits` decimals, without trailing zeros.
pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        None => "-".into(),
        Some(v) if !v.is_finite() => v.to_string(),
        Some(v) => {
            let s = format!("{v:.digits$}");
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_loses_escapes_newlines_and_bidi_overrides() {
        assert_eq!(term("ok\x1b[31mred\x07", 80), "ok\u{FFFD}[31mred\u{FFFD}");
        assert_eq!(term("a\nb\tc\r", 80), "a b c\u{FFFD}");
        assert_eq!(term("x\u{202E}y", 80), "x\u{FFFD}y");
        assert_eq!(term("abcdef", 3), "abc…");
    }

    #[test]
    fn markdown_text_cannot_break_out_of_its_cell() {
        assert_eq!(markdown("a|b `c` *d*", false), r"a\|b \`c\` \*d\*");
        assert_eq!(markdown("<script>&\n# h", false), "&lt;script\\>&amp; \\# h");
        assert_eq!(markdown("l1\nl2", true), "l1\nl2");
    }

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["long".into(), "x".into()]);
        t.row(vec!["é".into(), "".into()]);
        assert_eq!(t.render(), "A      BB\nlong   x\né\n");
    }

    #[test]
    fn spans_show_their_two_largest_units() {
        assert_eq!(span(SignedDuration::from_secs(93_784)), "1d2h");
        assert_eq!(span(SignedDuration::from_secs(3_601)), "1h");
        assert_eq!(span(SignedDuration::from_secs(310)), "5m10s");
        assert_eq!(span(SignedDuration::from_secs(-60)), "-1m");
        assert_eq!(span(SignedDuration::ZERO), "0s");
        assert_eq!(num(Some(0.25), 3), "0.25");
        assert_eq!(num(Some(2.0), 3), "2");
    }
}
