//! `supctl schedule`: ConfigMgr schedule tokens, decoded and made, offline.

use super::*;

pub(crate) fn schedule(command: ScheduleCommand) -> Result<(), Failure> {
    use sup_core::token::{self, Token, TokenJson};
    match command {
        ScheduleCommand::Decode {
            token: text,
            output,
        } => {
            let tokens = token::decode(&text).map_err(|e| invalid(e.to_string()))?;
            let json: Vec<TokenJson> = tokens.iter().map(TokenJson::from).collect();
            let text_json = if json.len() == 1 {
                serde_json::to_string(&json[0])
            } else {
                serde_json::to_string(&json)
            }
            .map_err(|e| anyhow::anyhow!(e))?;
            let names: Vec<String> = text
                .trim()
                .as_bytes()
                .chunks(16)
                .map(|c| String::from_utf8_lossy(c).to_uppercase())
                .collect();
            format::print(output, &text_json, &names, |_| {
                let mut out = String::new();
                for j in &json {
                    let mut fields = vec![format!("type={}", j.kind), format!("start={}", j.start)];
                    for (k, v) in [
                        ("day_span", j.day_span),
                        ("hour_span", j.hour_span),
                        ("minute_span", j.minute_span),
                        ("weekday", j.weekday),
                        ("weeks", j.weeks),
                        ("week_order", j.week_order),
                        ("months", j.months),
                        ("month_day", j.month_day),
                    ] {
                        if let Some(v) = v {
                            fields.push(format!("{k}={v}"));
                        }
                    }
                    if j.is_gmt {
                        fields.push("is_gmt=true".into());
                    }
                    if j.day_duration + j.hour_duration + j.minute_duration > 0 {
                        fields.push(format!(
                            "duration={}d{}h{}m",
                            j.day_duration, j.hour_duration, j.minute_duration
                        ));
                    }
                    out.push_str(&fields.join(" "));
                    out.push('\n');
                }
                out
            })?;
            Ok(())
        }
        ScheduleCommand::Encode {
            kind,
            start,
            is_gmt,
            day_span,
            hour_span,
            minute_span,
            weekday,
            weeks,
            week_order,
            months,
            month_day,
        } => {
            let json: Vec<TokenJson> = match kind {
                Some(kind) => vec![TokenJson {
                    kind,
                    start,
                    is_gmt,
                    day_duration: 0,
                    hour_duration: 0,
                    minute_duration: 0,
                    day_span,
                    hour_span,
                    minute_span,
                    weekday,
                    weeks,
                    week_order,
                    months,
                    month_day,
                    unused_bits: 0,
                }],
                None => {
                    let text = std::io::read_to_string(std::io::stdin())
                        .context("reading JSON from standard input")?;
                    let value: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("standard input is not JSON: {e}")))?;
                    let list = match value {
                        serde_json::Value::Array(items) => items,
                        other => vec![other],
                    };
                    list.into_iter()
                        .map(|v| {
                            serde_json::from_value::<TokenJson>(v)
                                .map_err(|e| invalid(format!("schedule JSON: {e}")))
                        })
                        .collect::<Result<_, _>>()?
                }
            };
            let tokens: Vec<Token> = json
                .iter()
                .map(Token::try_from)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(e.to_string()))?;
            println!(
                "{}",
                token::encode(&tokens).map_err(|e| invalid(e.to_string()))?
            );
            Ok(())
        }
    }
}
