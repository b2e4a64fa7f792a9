//! Node labels and the target selectors of a definition.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node's labels: `role=web,dc=a`.
pub type Labels = BTreeMap<String, String>;

/// Which nodes a definition applies to. No labels: every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// label → accepted values (any of them). A node matches when it has every listed label
    /// with one of its values.
    pub labels: BTreeMap<String, Vec<String>>,
}

impl Targets {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(key, wanted)| {
            labels
                .get(key)
                .is_some_and(|have| wanted.iter().any(|w| w == have))
        })
    }

    pub fn is_everyone(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Parse `k=v,k2=v2` as given on a command line. Errors name the bad item.
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut out = Labels::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("label `{item}` is not of the form key=value"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("label `{item}` has an empty key"));
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        {
            return Err(format!(
                "label key `{k}` may only hold letters, digits, `_`, `-`, `.` and `/`"
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label `{k}` is given twice"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &[&str])]) -> Targets {
        Targets {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn no_targets_means_everyone() {
        assert!(Targets::default().matches(&Labels::new()));
    }

    #[test]
    fn every_label_must_match_and_a_list_means_any() {
        let targets = t(&[("role", &["web"]), ("dc", &["a", "b"])]);
        let node = parse_labels("role=web,dc=b,extra=1").unwrap();
        assert!(targets.matches(&node));
        assert!(!targets.matches(&parse_labels("role=web,dc=c").unwrap()));
        assert!(!targets.matches(&parse_labels("role=web").unwrap()));
        assert!(!targets.matches(&parse_labels("role=db,dc=a").unwrap()));
    }

    #[test]
    fn bad_label_text_is_refused_with_the_item() {
        assert!(parse_labels("role").unwrap_err().contains("role"));
        assert!(parse_labels("=x").unwrap_err().contains("empty key"));
        assert!(parse_labels("a=1,a=2").unwrap_err().contains("twice"));
        assert_eq!(parse_labels("").unwrap(), Labels::new());
    }
}
