//! Tables for people, through comfy-table: columns aligned as kubectl aligns them (no borders),
//! states and health in colour only on a terminal and never with `NO_COLOR` set
//! (https://no-color.org).

use std::io::IsTerminal as _;

use comfy_table::{Cell, Color, ContentArrangement, Table, presets::NOTHING};

/// Whether this process may colour what it prints.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A value's colour: good states green, bad ones red, passing ones yellow.
fn tint(text: &str) -> Option<Color> {
    match text {
        "active" | "ready" | "healthy" | "succeeded" | "ok" => Some(Color::Green),
        "failed" | "unhealthy" | "removed" => Some(Color::Red),
        "declared" | "provisioning" | "installing" | "installed" | "verifying" | "removing"
        | "degraded" | "running" => Some(Color::Yellow),
        _ => None,
    }
}

/// Renders `rows` under `header`, each line prefixed by `indent`, without trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    render_styled(header, rows, indent, colour())
}

fn render_styled(header: &[&str], rows: &[Vec<String>], indent: &str, colour: bool) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(Cell::new));
    if colour {
        // The decision is ours (terminal, NO_COLOR), not the crate's own guess.
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    for row in rows {
        t.add_row(row.iter().map(|v| match tint(v).filter(|_| colour) {
            Some(c) => Cell::new(v).fg(c),
            None => Cell::new(v),
        }));
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(indent);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_colour_only_when_asked() {
        let rows = vec![
            vec!["cen-sup01.corp.example.com".to_string(), "active".into()],
            vec!["b".to_string(), "failed".into()],
        ];
        let plain = render_styled(&["SERVER", "STATE"], &rows, "  ", false);
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines.len(), 3, "{plain}");
        let at = |l: &str, w: &str| l.find(w).expect("column");
        assert_eq!(at(lines[0], "STATE"), at(lines[1], "active"), "{plain}");
        assert_eq!(at(lines[1], "active"), at(lines[2], "failed"), "{plain}");
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("  ") && !l.ends_with(' '))
        );
        assert!(!plain.contains('\u{1b}'));
        let coloured = render_styled(&["SERVER", "STATE"], &rows, "", true);
        assert!(coloured.contains('\u{1b}'), "{coloured}");
    }
}
