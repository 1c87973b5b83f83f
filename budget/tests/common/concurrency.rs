//! Many agents racing for one tenant's budget: the limits hold and nothing stays reserved.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{RngExt, SeedableRng};
use tokio::sync::Barrier;
use tollgate_budget::{CommitOutcome, Nanos, Period, Store};

use super::{budget, req, unbudgeted};

pub const REQUESTS: usize = 500;
pub const AGENTS: usize = 10;
const TENANT_LIMIT: Nanos = 100_000_000; // about 50 requests of the 2_000_000 average
const AGENT_LIMIT: Nanos = 15_000_000;

/// Fires `REQUESTS` reserve-then-commit flows at once, spread over `stores` (several store
/// objects sharing one backend model several proxy instances), and checks every scope.
pub async fn race(stores: Vec<Arc<dyn Store>>, seed: u64) {
    let tenant = "conc";
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let barrier = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let agent = i % AGENTS;
        let amount: Nanos = rng.random_range(1_000_000..=3_000_000);
        let pct: Nanos = rng.random_range(0..=100);
        let store = stores[i % stores.len()].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let scopes = [
                budget(tenant, TENANT_LIMIT, Period::Month),
                unbudgeted("conc/w"),
                budget(&format!("conc/w/a{agent}"), AGENT_LIMIT, Period::Day),
            ];
            barrier.wait().await;
            let id = format!("req-{i}");
            let answer = store
                .reserve(&req(&id, &scopes, amount, amount / 2))
                .await
                .expect("reserve");
            if !answer.decision.is_allowed() {
                return None;
            }
            assert!(answer.granted >= amount / 2 && answer.granted <= amount);
            let actual = answer.granted * pct / 100;
            let done = store.commit(tenant, &id, actual).await.expect("commit");
            assert!(
                matches!(
                    done,
                    CommitOutcome::Committed {
                        replayed: false,
                        ..
                    }
                ),
                "{done:?}"
            );
            Some((agent, actual))
        }));
    }
    let mut per_agent: BTreeMap<String, Nanos> = BTreeMap::new();
    let (mut allowed, mut total) = (0, 0);
    for t in tasks {
        if let Some((agent, actual)) = t.await.expect("task") {
            allowed += 1;
            total += actual;
            *per_agent.entry(format!("conc/w/a{agent}")).or_default() += actual;
        }
    }
    assert!(
        allowed > 0 && allowed < REQUESTS,
        "budgets must bind: {allowed} of {REQUESTS} allowed"
    );

    let rows = stores[0].balances(Some(tenant)).await.expect("balances");
    assert_eq!(rows.len(), 1 + per_agent.len(), "{rows:?}");
    for row in rows {
        assert_eq!(row.reserved, 0, "{} still holds money", row.scope);
        assert!(
            row.spent <= row.limit,
            "{} overspent: {} > {}",
            row.scope,
            row.spent,
            row.limit
        );
        let want = if row.scope == tenant {
            total
        } else {
            per_agent[&row.scope]
        };
        assert_eq!(
            row.spent, want,
            "{} spent differs from what was committed",
            row.scope
        );
    }
}
