//! Reading tollgate's budget balances in tests: `/admin/budgets` rows as integer nano-USD,
//! and waiting (bounded) for a balance to reach a state the reaper or a settlement brings.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Tollgate;

/// One row of `GET /admin/budgets`, money in nano-USD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    pub scope: String,
    pub period: String,
    pub limit: i64,
    pub spent: i64,
    pub reserved: i64,
    pub remaining: i64,
    pub source: String,
}

/// A decimal USD string (`"0.0125"`, `"3"`) as nano-USD, exactly: no float on the way, so
/// sums of headers compare equal to the store's sums.
pub fn usd_to_nanos(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(
        frac.len() <= 9 && !whole.is_empty(),
        "not a nano-USD amount: {text:?}"
    );
    let whole: i64 = whole
        .parse()
        .unwrap_or_else(|_| panic!("not a USD amount: {text:?}"));
    let frac: i64 = format!("{frac:0<9}")
        .parse()
        .unwrap_or_else(|_| panic!("not a USD amount: {text:?}"));
    whole * 1_000_000_000 + frac
}

fn money(row: &Value, field: &str) -> i64 {
    usd_to_nanos(
        row[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is not a decimal string in {row}")),
    )
}

impl BudgetRow {
    fn from_json(row: &Value) -> BudgetRow {
        BudgetRow {
            scope: row["scope"].as_str().unwrap_or_default().to_string(),
            period: row["period"].as_str().unwrap_or_default().to_string(),
            limit: money(row, "limit_usd"),
            spent: money(row, "spent_usd"),
            reserved: money(row, "reserved_usd"),
            remaining: money(row, "remaining_usd"),
            source: row["source"].as_str().unwrap_or_default().to_string(),
        }
    }
}

impl Tollgate {
    /// Every budget row `/admin/budgets` lists (under `scope`, if given).
    pub async fn budgets(&self, scope: Option<&str>) -> Vec<BudgetRow> {
        let path = match scope {
            Some(s) => format!("/admin/budgets?scope={s}"),
            None => "/admin/budgets".to_string(),
        };
        let reply = self.admin().get(&path).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        reply.json()["budgets"]
            .as_array()
            .unwrap_or_else(|| panic!("no budgets array in {}", reply.text()))
            .iter()
            .map(BudgetRow::from_json)
            .collect()
    }

    /// The row of exactly `scope`.
    pub async fn budget(&self, scope: &str) -> BudgetRow {
        let rows = self.budgets(Some(scope)).await;
        rows.iter()
            .find(|r| r.scope == scope)
            .cloned()
            .unwrap_or_else(|| panic!("no budget row for {scope}: {rows:?}"))
    }

    /// Polls `scope`'s row until `done` holds, at most `within`; panics with the last row
    /// and the process log otherwise.
    pub async fn wait_for_budget(
        &self,
        scope: &str,
        within: Duration,
        done: impl Fn(&BudgetRow) -> bool,
    ) -> BudgetRow {
        let deadline = Instant::now() + within;
        loop {
            let row = self.budget(scope).await;
            if done(&row) {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "{scope} did not reach the expected state within {within:?}: {row:?}\ntollgate log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::usd_to_nanos;

    #[test]
    fn decimal_usd_parses_exactly() {
        for (text, nanos) in [
            ("0", 0),
            ("3", 3_000_000_000),
            ("0.0125", 12_500_000),
            ("1.000000001", 1_000_000_001),
            ("12.5", 12_500_000_000),
        ] {
            assert_eq!(usd_to_nanos(text), nanos, "{text}");
        }
    }
}
