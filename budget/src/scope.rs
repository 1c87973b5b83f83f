//! Scope paths: validation, the tenant root, ancestors, run scopes and prefix matching.

use crate::StoreError;

/// Levels of a configured path: tenant/workspace/app/workflow/agent.
pub const MAX_DEPTH: usize = 5;
const MAX_SEGMENT: usize = 128;
const RUN_PREFIX: &str = "run:";

fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SEGMENT
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks a scope path: 1..=5 segments of letters, digits, `_ - .`, optionally followed by
/// one `run:<id>` segment (same alphabet) for a per-run scope.
///
/// The alphabet keeps scopes safe inside storage keys (no `{`, `}` or `|`).
pub fn validate_scope(scope: &str) -> Result<(), StoreError> {
    let mut segments: Vec<&str> = scope.split('/').collect();
    if let Some(last) = segments.last()
        && let Some(run) = last.strip_prefix(RUN_PREFIX)
    {
        if segments.len() < 2 || !plain_segment(run) {
            return Err(StoreError::Invalid(format!(
                "`{scope}`: a run scope is <agent scope>/run:<id>"
            )));
        }
        segments.pop();
    }
    if segments.len() > MAX_DEPTH || !segments.iter().all(|s| plain_segment(s)) {
        return Err(StoreError::Invalid(format!(
            "`{scope}` is not a scope path: 1 to {MAX_DEPTH} segments of letters, digits, \
             _ - . separated by /"
        )));
    }
    Ok(())
}

/// The tenant (first segment) of a scope path: every key of its budgets lives under it.
pub fn tenant_of(scope: &str) -> &str {
    scope.split('/').next().unwrap_or(scope)
}

/// The per-run scope under an agent scope, for an `x-tollgate-run` id.
pub fn run_scope(agent_scope: &str, run_id: &str) -> Result<String, StoreError> {
    let scope = format!("{agent_scope}/{RUN_PREFIX}{run_id}");
    validate_scope(&scope)?;
    Ok(scope)
}

/// The scope and all its ancestors, tenant first: `a`, `a/b`, `a/b/c`.
pub fn path_of(scope: &str) -> Vec<&str> {
    scope
        .match_indices('/')
        .map(|(i, _)| &scope[..i])
        .chain(std::iter::once(scope))
        .collect()
}

/// Whether `scope` is `prefix` or lies under it (segment-wise: `a/b` does not match `a/bc`).
pub fn under_prefix(scope: &str, prefix: Option<&str>) -> bool {
    match prefix {
        None | Some("") => true,
        Some(p) => {
            scope == p || (scope.starts_with(p) && scope.as_bytes().get(p.len()) == Some(&b'/'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_validation_table() {
        let cases = [
            ("acme", true),
            ("acme/research/crawler", true),
            ("a/b/c/d/e", true),
            ("a/b/c/d/e/f", false),
            ("a/b/c/d/e/run:42", true),
            ("acme/run:x-1.2_z", true),
            ("run:x", false),
            ("acme/run:", false),
            ("acme/run:a/b", false),
            ("", false),
            ("acme//x", false),
            ("ac{me}", false),
            ("acme/re search", false),
            ("acme/x|y", false),
        ];
        for (scope, ok) in cases {
            assert_eq!(validate_scope(scope).is_ok(), ok, "{scope}");
        }
    }

    #[test]
    fn paths_tenants_prefixes() {
        assert_eq!(path_of("a/b/c"), vec!["a", "a/b", "a/b/c"]);
        assert_eq!(path_of("a"), vec!["a"]);
        assert_eq!(tenant_of("acme/research"), "acme");
        assert_eq!(run_scope("acme/x", "r1").unwrap(), "acme/x/run:r1");
        assert!(run_scope("acme/x", "r/1").is_err());
        assert!(under_prefix("a/b/c", Some("a/b")));
        assert!(under_prefix("a/b", Some("a/b")));
        assert!(!under_prefix("a/bc", Some("a/b")));
        assert!(under_prefix("a/bc", None));
    }
}
