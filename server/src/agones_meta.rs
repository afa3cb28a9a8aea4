//! GameServer metadata that `serve --agones` understands (plain data, no
//! SDK: built and tested without the `agones` feature).

use std::collections::BTreeMap;
use std::path::PathBuf;

pub const SCENARIO: &str = "dualplane.dev/scenario";
pub const SEED: &str = "dualplane.dev/seed";
pub const MAX_CLIENTS: &str = "dualplane.dev/max-clients";
pub const SESSION: &str = "dualplane.dev/session";

/// Settings read from GameServer annotations.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides {
    pub scenario: Option<PathBuf>,
    pub seed: Option<u64>,
    pub max_clients: Option<usize>,
    /// The match (`dualplane.dev/session`): connect tokens must name it.
    pub session: Option<String>,
    /// Annotations that could not be used, with why.
    pub rejected: Vec<String>,
}

impl Overrides {
    /// Reads the `dualplane.dev/*` annotations; a bad value is reported in
    /// `rejected` and ignored, never fatal.
    #[must_use]
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Overrides {
        let mut o = Overrides::default();
        if let Some(v) = a.get(SCENARIO).filter(|v| !v.is_empty()) {
            o.scenario = Some(PathBuf::from(v));
        }
        if let Some(v) = a.get(SEED) {
            match v.trim().parse() {
                Ok(s) => o.seed = Some(s),
                Err(_) => o.rejected.push(format!("{SEED}={v:?}: expected an unsigned integer")),
            }
        }
        if let Some(v) = a.get(MAX_CLIENTS) {
            match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => o.max_clients = Some(n),
                _ => o.rejected.push(format!("{MAX_CLIENTS}={v:?}: expected a positive integer")),
            }
        }
        if let Some(v) = a.get(SESSION) {
            if v.len() <= net::token::MAX_ID {
                o.session = Some(v.clone());
            } else {
                o.rejected.push(format!("{SESSION}: {} bytes; a match id has at most {}", v.len(), net::token::MAX_ID));
            }
        }
        for k in a.keys().filter(|k| k.starts_with("dualplane.dev/")) {
            if ![SCENARIO, SEED, MAX_CLIENTS, SESSION].contains(&k.as_str()) {
                o.rejected.push(format!("{k}: unknown dualplane.dev annotation"));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_override_and_bad_values_are_reported() {
        let a: BTreeMap<String, String> = [(SEED, "77"), (MAX_CLIENTS, "0"), (SCENARIO, "/scenarios/a.toml"), ("other", "x"), ("dualplane.dev/typo", "1")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let o = Overrides::from_annotations(&a);
        assert_eq!(o.seed, Some(77));
        assert_eq!(o.scenario, Some(PathBuf::from("/scenarios/a.toml")));
        assert_eq!(o.max_clients, None);
        assert_eq!(o.rejected.len(), 2);
        assert!(o.rejected[0].contains("max-clients"));
        assert!(o.rejected[1].contains("dualplane.dev/typo"));
        assert_eq!(Overrides::from_annotations(&BTreeMap::new()), Overrides::default());
    }
}
