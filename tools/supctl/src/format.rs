//! `-o`: how a listing is printed, as kubectl prints them. `json` is each command's JSON (a
//! contract for `status`), `yaml` the same document as YAML, `name` one resource name per line
//! for scripts, `table` (the default) for people, `wide` the table with more columns.

use clap::ValueEnum;

use crate::Failure;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    /// The table with more columns.
    Wide,
    Json,
    Yaml,
    Name,
}

/// `supctl site get`: the formats of a listing, and the site as a site file.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SiteFormat {
    Table,
    /// The table with more columns.
    Wide,
    Json,
    Yaml,
    Name,
    /// The stored site as a site file, which `apply -f` takes back.
    Toml,
}

/// One listing as it is printed: `json` is its JSON document, `names` its resources' names,
/// `table` the human view, given whether it is the wide one (made only when asked for).
pub fn render(
    format: Format,
    json: &str,
    names: &[String],
    table: impl FnOnce(bool) -> String,
) -> Result<String, Failure> {
    Ok(match format {
        Format::Json => format!("{json}\n"),
        Format::Yaml => yaml(json)?,
        Format::Name => names.iter().map(|n| format!("{n}\n")).collect(),
        Format::Table => table(false),
        Format::Wide => table(true),
    })
}

/// Prints one listing ([`render`]).
pub fn print(
    format: Format,
    json: &str,
    names: &[String],
    table: impl FnOnce(bool) -> String,
) -> Result<(), Failure> {
    print!("{}", render(format, json, names, table)?);
    Ok(())
}

/// The JSON document as YAML: the same values, keys and order.
pub fn yaml(json: &str) -> Result<String, Failure> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| anyhow::anyhow!("rendering YAML: {e}"))?;
    serde_yaml_ng::to_string(&value).map_err(|e| anyhow::anyhow!("rendering YAML: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every JSON document a listing prints reads back from its YAML as the same value.
    pub fn round_trips(json: &str) {
        let from_json: serde_json::Value = serde_json::from_str(json).expect("JSON");
        let text = yaml(json).unwrap_or_else(|_| panic!("YAML of {json}"));
        let from_yaml: serde_json::Value = serde_yaml_ng::from_str(&text).expect("YAML reads");
        assert_eq!(from_json, from_yaml, "{text}");
    }

    #[test]
    fn yaml_is_the_json_document() {
        round_trips(r#"{"sites":[{"code":"CEN","epoch":7,"active":null,"ok":true,"x":1.5}]}"#);
        round_trips(r#"[]"#);
        round_trips(r#"[{"run":"r-1","server":"cen-sup01.corp.example.com","state":"succeeded"}]"#);
    }
}
