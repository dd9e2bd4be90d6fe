//! Text that came from elsewhere (users' objects, a server's answer) made safe for wherever it goes:
//! statuses, Events, logs, notifications. Its own module because every one of those writers needs it
//! and none of them should depend on another for it.

/// User-written text made safe for any destination: control characters (NUL, ESC, BEL, newlines...)
/// removed, and at most `max` characters, the cut marked with an ellipsis.
pub fn plain(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn plain_keeps_short_text_whole() {
        assert_eq!(plain("Cap the pool", 256), "Cap the pool");
        assert_eq!(plain("line\nbreak", 256), "linebreak");
        assert_eq!(plain("abcdef", 4), "abc…");
    }

    #[test]
    fn control_characters_go_and_long_text_is_cut_with_an_ellipsis() {
        assert_eq!(plain("a\u{1b}[31mb\nc", 10), "a[31mbc");
        assert_eq!(plain("abcd", 4), "abcd");
    }
}
