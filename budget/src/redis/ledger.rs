//! The budget ledger on Redis: each operation one call of a script in `lua/ledger/`, all keys
//! of one call under the tenant's hash tag.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{Script, Value};

use super::{RedisStore, Reply, ms};
use crate::StoreError;
use crate::keys::from_millis;
use crate::ledger::Ledger;
use crate::model::{
    Balance, CommitOutcome, Decision, DenyReason, ExtendOutcome, LimitOverride, Nanos, Period,
    ReleaseOutcome, ReserveAnswer, ReserveRequest, ScopeBudget, balance, check_limit,
};
use crate::plan::{Plan, plan};
use crate::scope::{tenant_of, under_prefix, validate_scope};
use crate::store::{check_reservation_ref, spend_request};

/// The scripts in `lua/ledger/`.
#[derive(Debug)]
pub(super) struct Scripts {
    reserve: Script,
    record: Script,
    commit: Script,
    release: Script,
    extend: Script,
    reap: Script,
    set_limit: Script,
    balances: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            reserve: with_common(include_str!("lua/ledger/reserve.lua")),
            record: with_common(include_str!("lua/ledger/record.lua")),
            commit: with_common(include_str!("lua/ledger/commit.lua")),
            release: with_common(include_str!("lua/ledger/release.lua")),
            extend: with_common(include_str!("lua/ledger/extend.lua")),
            reap: with_common(include_str!("lua/ledger/reap.lua")),
            set_limit: with_common(include_str!("lua/ledger/set_limit.lua")),
            balances: with_common(include_str!("lua/ledger/balances.lua")),
        }
    }
}

/// Every ledger script starts with `lua/ledger/common.lua` (window and reservation helpers).
fn with_common(script: &str) -> Script {
    Script::new(&format!(
        "{}\n{script}",
        include_str!("lua/ledger/common.lua")
    ))
}

/// Holds a reap script reaps per call, so one call never blocks Redis for long.
const REAP_BATCH: usize = 1000;

/// `reserve`, or with `dry_run` its `decide`: one script, which holds nothing when dry.
async fn reserve_or_decide(
    s: &RedisStore,
    req: &ReserveRequest,
    dry_run: bool,
) -> Result<ReserveAnswer, StoreError> {
    let now = s.opts.clock.now();
    let plan = plan(req, now)?;
    s.register(&plan.tenant).await?;
    let base = s.tenant_base(&plan.tenant);
    let mut inv = s.scripts.ledger.reserve.prepare_invoke();
    inv.key(format!("{base}exp"))
        .arg(&base)
        .arg(now.timestamp_millis())
        .arg(&req.reservation_id)
        .arg(req.idempotency_key.as_deref().unwrap_or(""))
        .arg(req.amount)
        .arg(req.min_amount)
        .arg(ms(req.ttl))
        .arg(ms(s.opts.settled_retention))
        .arg(s.opts.reap_on_reserve)
        .arg(if dry_run { "1" } else { "0" })
        .arg(ms(s.opts.run_retention))
        .arg(if req.forget_settled { "1" } else { "0" });
    scope_args(&mut inv, &plan);
    let key = format!("{base}exp");
    let v: Value = if dry_run {
        s.call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?
    } else {
        s.call_durable(key, inv).await?
    };
    let r = Reply::of(&v)?;
    match r.str(0)?.as_str() {
        "deny" => {
            let scope = r.str(2)?;
            Ok(ReserveAnswer {
                reservation_id: r.str(1)?,
                decision: Decision::Deny {
                    scope: scope.clone(),
                    reason: DenyReason::BudgetExceeded,
                },
                granted: 0,
                tightest: Some((scope, r.int(3)?)),
                expires_at: None,
                replayed: false,
                remaining: rooms(&r.nested(4)?)?,
            })
        }
        kind @ ("new" | "replay" | "dry") => Ok(ReserveAnswer {
            reservation_id: r.str(1)?,
            decision: if r.str(2)? == "allow" {
                Decision::Allow
            } else {
                Decision::AllowWithCaps
            },
            granted: r.int(3)?,
            tightest: if r.int(7)? == 1 {
                Some((r.str(4)?, r.int(5)?))
            } else {
                None
            },
            expires_at: (kind != "dry")
                .then(|| r.int(6).map(from_millis))
                .transpose()?,
            replayed: kind == "replay",
            remaining: rooms(&r.nested(8)?)?,
        }),
        other => Err(StoreError::Internal(format!(
            "reserve script answered `{other}`"
        ))),
    }
}

/// The `{scope, room, ...}` list the reserve script answers with.
fn rooms(flat: &Reply<'_>) -> Result<Vec<(String, Nanos)>, StoreError> {
    (0..flat.len() / 2)
        .map(|i| Ok((flat.str(2 * i)?, flat.int(2 * i + 1)?)))
        .collect()
}

/// The scope count, then six arguments per scope, as the scripts' `resolve` reads them.
fn scope_args(inv: &mut redis::ScriptInvocation<'_>, plan: &Plan) {
    inv.arg(plan.scopes.len());
    for p in &plan.scopes {
        inv.arg(&p.scope);
        match p.configured {
            Some((limit, period)) => inv.arg(limit).arg(period.as_str()),
            None => inv.arg("").arg(""),
        };
        inv.arg(&p.windows[0]).arg(&p.windows[1]).arg(&p.windows[2]);
    }
}

/// Releases every tenant's lapsed holds (the [`Backend`](crate::Backend) sweep).
pub(super) async fn reap(s: &RedisStore, now: DateTime<Utc>) -> Result<usize, StoreError> {
    // Registrations are refreshed once per reaper round, in case Redis lost them silently
    // (a failover without an error on this connection).
    s.forget_registrations();
    let mut total = 0;
    for tenant in s.tenants().await? {
        let base = s.tenant_base(&tenant);
        loop {
            let mut inv = s.scripts.ledger.reap.prepare_invoke();
            inv.key(format!("{base}exp"))
                .arg(&base)
                .arg(now.timestamp_millis())
                .arg(REAP_BATCH)
                .arg(ms(s.opts.settled_retention));
            let n: usize = s
                .call(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            total += n;
            if n < REAP_BATCH {
                break;
            }
        }
    }
    Ok(total)
}

/// Balances and overrides of every tenant the prefix can reach, one script call per tenant.
pub(super) async fn listing(
    s: &RedisStore,
    prefix: Option<&str>,
) -> Result<(Vec<Balance>, Vec<LimitOverride>), StoreError> {
    let tenants = match prefix.filter(|p| !p.is_empty()) {
        Some(p) => vec![tenant_of(p).to_owned()],
        None => s.tenants().await?,
    };
    let (mut balances, mut overrides) = (Vec::new(), Vec::new());
    for tenant in tenants {
        let base = s.tenant_base(&tenant);
        let mut inv = s.scripts.ledger.balances.prepare_invoke();
        inv.key(format!("{base}idx")).arg(&base);
        let v: Value = s
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        let (rows, ovr) = (r.nested(0)?, r.nested(1)?);
        let mut tenant_overrides = Vec::new();
        for i in (0..ovr.len()).step_by(3) {
            let scope = ovr.str(i)?;
            let period = parse_period(&ovr.str(i + 2)?)?;
            tenant_overrides.push(LimitOverride {
                scope,
                limit: ovr.int(i + 1)?,
                period,
            });
        }
        for i in (0..rows.len()).step_by(5) {
            let line = rows.str(i)?;
            let (scope, window) = line
                .split_once('|')
                .ok_or_else(|| StoreError::Internal(format!("bad window line `{line}`")))?;
            if !under_prefix(scope, prefix) {
                continue;
            }
            let period = parse_period(&rows.str(i + 1)?)?;
            balances.push(balance(
                scope.to_owned(),
                window.to_owned(),
                period,
                rows.int(i + 2)?,
                rows.int(i + 3)?,
                rows.int(i + 4)?,
                &tenant_overrides,
            ));
        }
        overrides.extend(
            tenant_overrides
                .into_iter()
                .filter(|o| under_prefix(&o.scope, prefix)),
        );
    }
    balances.sort_by(|a, b| (&a.scope, &a.window).cmp(&(&b.scope, &b.window)));
    overrides.sort_by(|a, b| a.scope.cmp(&b.scope));
    Ok((balances, overrides))
}

fn parse_period(text: &str) -> Result<Period, StoreError> {
    Period::parse(text)
        .ok_or_else(|| StoreError::Internal(format!("unknown period `{text}` in the store")))
}

#[async_trait]
impl Ledger for RedisStore {
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError> {
        reserve_or_decide(self, req, false).await
    }

    async fn decide(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError> {
        reserve_or_decide(self, req, true).await
    }

    async fn record_spend(
        &self,
        id: &str,
        scopes: &[ScopeBudget],
        amount: Nanos,
    ) -> Result<bool, StoreError> {
        let now = self.opts.clock.now();
        let plan = plan(&spend_request(id, scopes, amount), now)?;
        self.register(&plan.tenant).await?;
        let base = self.tenant_base(&plan.tenant);
        let mut inv = self.scripts.ledger.record.prepare_invoke();
        inv.key(format!("{base}exp"))
            .arg(&base)
            .arg(now.timestamp_millis())
            .arg(id)
            .arg(amount)
            .arg(ms(self.opts.settled_retention))
            .arg(ms(self.opts.run_retention));
        scope_args(&mut inv, &plan);
        let n: i64 = self.call_durable(format!("{base}exp"), inv).await?;
        Ok(n == 1)
    }

    async fn commit(
        &self,
        tenant: &str,
        id: &str,
        actual: Nanos,
    ) -> Result<CommitOutcome, StoreError> {
        check_limit("a commit's actual cost", actual)?;
        check_reservation_ref(tenant, id)?;
        let base = self.tenant_base(tenant);
        let mut inv = self.scripts.ledger.commit.prepare_invoke();
        inv.key(format!("{base}exp"))
            .arg(&base)
            .arg(id)
            .arg(actual)
            .arg(self.opts.clock.now().timestamp_millis())
            .arg(ms(self.opts.settled_retention));
        let v: Value = self.call_durable(format!("{base}exp"), inv).await?;
        let r = Reply::of(&v)?;
        match r.str(0)?.as_str() {
            "committed" => Ok(CommitOutcome::Committed {
                actual: r.int(1)?,
                after_expiry: r.int(2)? == 1,
                replayed: r.int(3)? == 1,
            }),
            "released" => Ok(CommitOutcome::AlreadyReleased),
            "notfound" => Ok(CommitOutcome::NotFound),
            other => Err(StoreError::Internal(format!(
                "commit script answered `{other}`"
            ))),
        }
    }

    async fn granted(&self, tenant: &str, id: &str) -> Result<Option<Nanos>, StoreError> {
        check_reservation_ref(tenant, id)?;
        let key = format!("{}r|{id}", self.tenant_base(tenant));
        self.call(|mut c| async move {
            redis::cmd("HGET")
                .arg(key)
                .arg("g")
                .query_async::<Option<i64>>(&mut c)
                .await
        })
        .await
    }

    async fn release(&self, tenant: &str, id: &str) -> Result<ReleaseOutcome, StoreError> {
        check_reservation_ref(tenant, id)?;
        let base = self.tenant_base(tenant);
        let mut inv = self.scripts.ledger.release.prepare_invoke();
        inv.key(format!("{base}exp"))
            .arg(&base)
            .arg(id)
            .arg(self.opts.clock.now().timestamp_millis())
            .arg(ms(self.opts.settled_retention));
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        match r.str(0)?.as_str() {
            "released" => Ok(ReleaseOutcome::Released {
                replayed: r.int(1)? == 1,
            }),
            "expired" => Ok(ReleaseOutcome::Expired),
            "committed" => Ok(ReleaseOutcome::AlreadyCommitted { actual: r.int(1)? }),
            "notfound" => Ok(ReleaseOutcome::NotFound),
            other => Err(StoreError::Internal(format!(
                "release script answered `{other}`"
            ))),
        }
    }

    async fn extend(
        &self,
        tenant: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<ExtendOutcome, StoreError> {
        check_reservation_ref(tenant, id)?;
        let base = self.tenant_base(tenant);
        let mut inv = self.scripts.ledger.extend.prepare_invoke();
        inv.key(format!("{base}exp"))
            .arg(&base)
            .arg(id)
            .arg(self.opts.clock.now().timestamp_millis())
            .arg(ms(ttl));
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        match r.str(0)?.as_str() {
            "extended" => Ok(ExtendOutcome::Extended {
                expires_at: from_millis(r.int(1)?),
            }),
            "expired" => Ok(ExtendOutcome::Expired),
            "settled" => Ok(ExtendOutcome::Settled),
            "notfound" => Ok(ExtendOutcome::NotFound),
            other => Err(StoreError::Internal(format!(
                "extend script answered `{other}`"
            ))),
        }
    }

    async fn set_limit(
        &self,
        scope: &str,
        limit: Option<Nanos>,
        period: Period,
    ) -> Result<(), StoreError> {
        validate_scope(scope)?;
        if let Some(l) = limit {
            check_limit("a limit", l)?;
        }
        let tenant = tenant_of(scope);
        self.register(tenant).await?;
        let base = self.tenant_base(tenant);
        let mut inv = self.scripts.ledger.set_limit.prepare_invoke();
        inv.key(format!("{base}ovr"))
            .arg(&base)
            .arg(scope)
            .arg(limit.map(|l| l.to_string()).unwrap_or_default())
            .arg(period.as_str());
        self.call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await
            .map(drop)
    }

    async fn limit_overrides(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<LimitOverride>, StoreError> {
        Ok(listing(self, prefix).await?.1)
    }

    async fn balances(&self, prefix: Option<&str>) -> Result<Vec<Balance>, StoreError> {
        Ok(listing(self, prefix).await?.0)
    }
}
