//! Where `-w` output goes: on a terminal, one screen redrawn in place per change (clear, home, the
//! view cut to the terminal's height); otherwise (a pipe, a file, `--no-redraw`) the first view once,
//! then a line per change, so a log of a rollout stays readable.

use std::io::{IsTerminal, Write};

/// Clears the screen and moves the cursor home: the next view replaces the last one.
pub const CLEAR: &str = "\x1b[2J\x1b[H";

#[derive(Debug)]
pub struct Screen {
    redraw: bool,
    /// The terminal's height, when known: a view never scrolls the screen.
    rows: Option<usize>,
}

impl Screen {
    /// Redraws when stdout is a terminal and `--no-redraw` was not given.
    pub fn new(no_redraw: bool) -> Self {
        let tty = std::io::stdout().is_terminal();
        let rows = terminal_size::terminal_size().map(|(_, h)| h.0 as usize);
        Self {
            redraw: tty && !no_redraw,
            rows,
        }
    }

    pub fn redraws(&self) -> bool {
        self.redraw
    }

    /// The whole view: in place on a terminal, else as it is.
    pub fn show(&self, text: &str) {
        if self.redraw {
            print(&format!("{CLEAR}{}", fit(text, self.rows)));
        } else {
            print(text);
        }
    }

    /// One line for a change (line mode only).
    pub fn line(&self, text: &str) {
        print(&format!("{text}\n"));
    }
}

/// `text` cut to `rows` lines (the last one says how many were left out), so a redraw never scrolls.
pub fn fit(text: &str, rows: Option<usize>) -> String {
    let Some(rows) = rows.filter(|r| *r >= 2) else {
        return text.to_string();
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() < rows {
        return text.to_string();
    }
    let keep = rows - 2;
    let mut out = lines[..keep].join("\n");
    out.push_str(&format!(
        "\n… {} more lines (make the terminal taller, or use --no-redraw)\n",
        lines.len() - keep
    ));
    out
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `12:04:05`, local time, for the lines of a watch.
pub fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_taller_than_the_terminal_is_cut_to_fit() {
        let text = (1..=10).map(|n| format!("line {n}\n")).collect::<String>();
        assert_eq!(fit(&text, None), text);
        assert_eq!(fit(&text, Some(40)), text);
        let cut = fit(&text, Some(5));
        assert_eq!(cut.lines().count(), 4, "{cut}");
        assert!(cut.starts_with("line 1\nline 2\nline 3\n… 7 more lines"), "{cut}");
    }
}
