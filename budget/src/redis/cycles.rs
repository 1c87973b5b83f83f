//! Cycles records and answers on Redis, under the tenant's hash tag beside its ledger:
//! `P:{t}:cy|<id>` a record's hash, `P:{t}:cyl|<agent>` the agent's list (a zset of
//! `<created_ms>|<id>` members, read newest first by text), `P:{t}:cya|<key>` an answer's
//! hash. Every script declares the keys it is named for, all in the tenant's slot; the list
//! script also reads the records its entries name, whose keys it builds from the tenant's
//! base, so they carry the same hash tag. Each key expires [`CYCLE_RETENTION`] after it
//! was written, and the list drops older entries as it goes.

use async_trait::async_trait;
use redis::{Script, Value};

use super::{RedisStore, Reply, fields, hash_reply};
use crate::StoreError;
use crate::cycles::{
    CYCLE_RETENTION, CycleAnswer, CycleFinal, CyclePage, CycleRecord, CycleStore, CycleUpdate,
    check_answer, check_answer_key, check_final, check_page, check_record, cursor_of, kept,
    parse_cursor, record_fields, record_from, retention_ms,
};
use crate::store::check_reservation_ref;

/// The scripts in `lua/cycles/`.
#[derive(Debug)]
pub(super) struct Scripts {
    put: Script,
    list: Script,
    finalize: Script,
    extend: Script,
    remember: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            put: Script::new(include_str!("lua/cycles/put.lua")),
            list: Script::new(include_str!("lua/cycles/list.lua")),
            finalize: Script::new(include_str!("lua/cycles/finalize.lua")),
            extend: Script::new(include_str!("lua/cycles/extend.lua")),
            remember: Script::new(include_str!("lua/cycles/remember.lua")),
        }
    }
}

fn record(flat: &Reply<'_>) -> Result<CycleRecord, StoreError> {
    let f = fields(flat)?;
    record_from(|name| f.get(name).cloned())
}

/// `"updated" | "unchanged", HGETALL` or `"notfound"`, as the CAS scripts answer.
fn update(v: &Value) -> Result<CycleUpdate, StoreError> {
    let r = Reply::of(v)?;
    match r.str(0)?.as_str() {
        "updated" => Ok(CycleUpdate::Updated(record(&r.nested(1)?)?)),
        "unchanged" => Ok(CycleUpdate::Unchanged(record(&r.nested(1)?)?)),
        "notfound" => Ok(CycleUpdate::NotFound),
        other => Err(StoreError::Internal(format!(
            "unexpected cycles reply `{other}`"
        ))),
    }
}

impl RedisStore {
    fn cycle_key(&self, tenant: &str, id: &str) -> String {
        format!("{}cy|{id}", self.tenant_base(tenant))
    }

    fn cycle_list_key(&self, tenant: &str, agent: &str) -> String {
        format!("{}cyl|{agent}", self.tenant_base(tenant))
    }

    fn cycle_answer_key(&self, tenant: &str, key: &str) -> String {
        format!("{}cya|{key}", self.tenant_base(tenant))
    }

    /// The exclusive lower bound of the list entries still kept now.
    fn cycle_oldest(&self) -> String {
        let oldest = self.opts.clock.now().timestamp_millis() - retention_ms() + 1;
        format!("({}", cursor_of(oldest.max(0), "").trim_end_matches('|'))
    }
}

#[async_trait]
impl CycleStore for RedisStore {
    async fn cycle_put(&self, r: &CycleRecord) -> Result<CycleRecord, StoreError> {
        check_record(r)?;
        let mut inv = self.scripts.cycles.put.prepare_invoke();
        inv.key(self.cycle_key(&r.tenant, &r.id))
            .key(self.cycle_list_key(&r.tenant, &r.agent))
            .arg(cursor_of(r.created_ms, &r.id))
            .arg(CYCLE_RETENTION.as_millis() as u64)
            .arg(self.cycle_oldest());
        for (name, value) in record_fields(r) {
            inv.arg(name).arg(value);
        }
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let existing = Reply::of(&v)?;
        if existing.len() == 0 {
            Ok(r.clone())
        } else {
            record(&existing)
        }
    }

    async fn cycle_get(&self, tenant: &str, id: &str) -> Result<Option<CycleRecord>, StoreError> {
        check_reservation_ref(tenant, id)?;
        let key = self.cycle_key(tenant, id);
        let v: Value = self
            .call(|mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await })
            .await?;
        let flat = hash_reply(&v)?;
        if flat.is_empty() {
            return Ok(None);
        }
        let r = record(&Reply(&flat))?;
        let now = self.opts.clock.now().timestamp_millis();
        Ok(kept(r.created_ms, now).then_some(r))
    }

    async fn cycle_list(
        &self,
        tenant: &str,
        agent: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<CyclePage, StoreError> {
        check_page(tenant, agent, limit)?;
        let from = match cursor {
            Some(c) => {
                parse_cursor(c)?;
                format!("({c}")
            }
            None => "+".to_owned(),
        };
        let mut inv = self.scripts.cycles.list.prepare_invoke();
        inv.key(self.cycle_list_key(tenant, agent))
            .arg(self.tenant_base(tenant))
            .arg(from)
            .arg(limit)
            .arg(self.cycle_oldest());
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        let mut records = (0..r.len())
            .map(|i| record(&r.nested(i)?))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| cursor_of(r.created_ms, &r.id))
        } else {
            None
        };
        Ok(CyclePage { records, next })
    }

    async fn cycle_finalize(
        &self,
        tenant: &str,
        id: &str,
        end: &CycleFinal,
    ) -> Result<CycleUpdate, StoreError> {
        check_reservation_ref(tenant, id)?;
        check_final(end)?;
        let mut inv = self.scripts.cycles.finalize.prepare_invoke();
        inv.key(self.cycle_key(tenant, id));
        match end {
            CycleFinal::Committed {
                charged,
                at_ms,
                metadata,
            } => {
                inv.arg("committed").arg(*at_ms).arg(charged.to_string());
                match metadata {
                    Some(m) => inv.arg("1").arg(m.as_str()),
                    None => inv.arg("0"),
                };
            }
            CycleFinal::Released { at_ms } => {
                inv.arg("released").arg(*at_ms).arg("").arg("0");
            }
        }
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        update(&v)
    }

    async fn cycle_extend(
        &self,
        tenant: &str,
        id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<CycleUpdate, StoreError> {
        check_reservation_ref(tenant, id)?;
        let mut inv = self.scripts.cycles.extend.prepare_invoke();
        inv.key(self.cycle_key(tenant, id))
            .arg(from_ms.to_string())
            .arg(to_ms.to_string());
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        update(&v)
    }

    async fn cycle_answer(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<CycleAnswer>, StoreError> {
        check_answer_key(tenant, key)?;
        let key = self.cycle_answer_key(tenant, key);
        let v: Value = self
            .call(|mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await })
            .await?;
        let flat = hash_reply(&v)?;
        if flat.is_empty() {
            return Ok(None);
        }
        let (a, at) = answer(&Reply(&flat))?;
        let now = self.opts.clock.now().timestamp_millis();
        Ok(kept(at, now).then_some(a))
    }

    async fn cycle_remember(
        &self,
        tenant: &str,
        key: &str,
        a: &CycleAnswer,
    ) -> Result<CycleAnswer, StoreError> {
        check_answer(tenant, key, a)?;
        let now = self.opts.clock.now().timestamp_millis();
        let mut inv = self.scripts.cycles.remember.prepare_invoke();
        inv.key(self.cycle_answer_key(tenant, key))
            .arg(a.payload.as_str())
            .arg(a.status)
            .arg(a.body.as_str())
            .arg(now)
            .arg(CYCLE_RETENTION.as_millis() as u64)
            .arg(now - retention_ms() + 1);
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let kept = Reply::of(&v)?;
        if kept.len() == 0 {
            Ok(a.clone())
        } else {
            answer(&kept).map(|(a, _)| a)
        }
    }
}

/// An answer's hash: `p` payload, `s` status, `b` body, `t` when it was kept.
fn answer(flat: &Reply<'_>) -> Result<(CycleAnswer, i64), StoreError> {
    let f = fields(flat)?;
    let bad = || StoreError::Internal("a stored Cycles answer is malformed".into());
    let get = |k: &str| f.get(k).cloned().ok_or_else(bad);
    Ok((
        CycleAnswer {
            payload: get("p")?,
            status: get("s")?.parse().map_err(|_| bad())?,
            body: get("b")?,
        },
        get("t")?.parse().map_err(|_| bad())?,
    ))
}
