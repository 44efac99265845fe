//! Commands that need no service: `validate` checks a site file as `apply` does, and
//! `completion` prints a shell's completion script.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::{Cli, Failure, invalid};

/// Reads a site file, `-` for standard input.
pub fn read_site_file(file: &Path) -> Result<String, Failure> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("reading the site file from standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    Ok(text)
}

/// Every rule `apply` checks, with no coordinator: a parent that is not in the file is taken as
/// applied (`apply` checks that it is). Prints each site it would apply; every broken rule is a
/// line `path: message [rule]` and the exit code 2.
pub fn validate(file: &Path) -> Result<(), Failure> {
    let text = read_site_file(file)?;
    let outside = parents_outside(&text);
    let sites =
        sup_core::spec::load_site_file(&text, &outside).map_err(|v| invalid(v.to_string()))?;
    for s in &sites {
        let parent = match &s.parent {
            Some(p) if outside.contains_key(p) => format!(", child of {p} (not in this file)"),
            Some(p) => format!(", child of {p}"),
            None => String::new(),
        };
        println!(
            "site {}: valid, {} software update points{parent}",
            s.code,
            s.software_update_points.len()
        );
    }
    Ok(())
}

/// The parents the file names but does not declare, as `load_site_file` takes applied sites.
fn parents_outside(text: &str) -> BTreeMap<String, Option<String>> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return BTreeMap::new();
    };
    let sites = doc
        .get("site")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    let declared: Vec<&str> = sites
        .iter()
        .filter_map(|s| s.get("code").and_then(|c| c.as_str()))
        .collect();
    sites
        .iter()
        .filter_map(|s| s.get("parent").and_then(|p| p.as_str()))
        .filter(|p| !p.is_empty() && !declared.contains(p))
        .map(|p| (p.to_string(), None))
        .collect()
}

/// Prints the completion script of `shell` for supctl. A reader that stops early (`| head`) is
/// not an error.
pub fn completion(shell: clap_complete::Shell) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "supctl", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("writing the completion script: {e}").into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_outside_the_file_are_the_ones_it_names_but_does_not_declare() {
        let text = r#"
[[site]]
code = "CH1"
parent = "CEN"
[[site]]
code = "CH2"
parent = "CH1"
[[site]]
code = "TOP"
"#;
        let outside = parents_outside(text);
        assert_eq!(outside.keys().collect::<Vec<_>>(), vec!["CEN"]);
        assert!(parents_outside("not toml [").is_empty());
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "supctl", &mut script);
            let script = String::from_utf8(script).expect("UTF-8");
            for command in ["apply", "validate", "status", "import", "completion"] {
                assert!(script.contains(command), "{shell:?} completes no {command}");
            }
        }
    }
}
