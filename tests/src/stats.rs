//! Parsing of Envoy's admin `/stats?format=json`.

use std::collections::HashMap;

use serde_json::Value;

/// Counters and gauges from a `/stats?format=json` document:
/// `{"stats": [{"name": .., "value": ..}, .., {"histograms": ..}]}`.
/// Histograms and non-numeric values are skipped.
pub(crate) fn parse_stats_json(text: &str) -> HashMap<String, u64> {
    let doc: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("admin /stats?format=json is not JSON ({e}): {text}"));
    doc.get("stats")
        .and_then(Value::as_array)
        .map(|stats| {
            stats
                .iter()
                .filter_map(|s| {
                    let name = s.get("name")?.as_str()?;
                    let value = s.get("value")?.as_u64()?;
                    Some((name.to_owned(), value))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_skips_histograms() {
        let text = r#"{"stats":[{"name":"a.b","value":3},{"name":"g","value":0},
            {"name":"t","value":"text"},{"histograms":{"computed_quantiles":[]}}]}"#;
        let stats = parse_stats_json(text);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats["a.b"], 3);
        assert_eq!(stats["g"], 0);
    }
}
