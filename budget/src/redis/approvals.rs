//! Approval records under the `{:apr}` hash tag: one hash per record, an index from the call
//! (agent, tool, argument hash) to its newest record, and a sorted set for listing.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{Script, Value};

use super::{RedisStore, Reply, fields, ms};
use crate::StoreError;
use crate::approvals::{
    ApprovalRecord, ApprovalStatus, ApprovalStore, check_approval, new_pending,
};
use crate::keys::{from_millis, millis};
use crate::store::check_id;

/// The scripts in `lua/approvals/`.
#[derive(Debug)]
pub(super) struct Scripts {
    request_approval: Script,
    find_approval: Script,
    decide_approval: Script,
    list_approvals: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            request_approval: Script::new(include_str!("lua/approvals/request_approval.lua")),
            find_approval: Script::new(include_str!("lua/approvals/find_approval.lua")),
            decide_approval: Script::new(include_str!("lua/approvals/decide_approval.lua")),
            list_approvals: Script::new(include_str!("lua/approvals/list_approvals.lua")),
        }
    }
}

impl RedisStore {
    fn approvals_base(&self) -> String {
        format!("{}:{{:apr}}:", self.prefix)
    }
}

fn stored_fields(a: &ApprovalRecord) -> Vec<(&'static str, String)> {
    vec![
        ("id", a.id.clone()),
        ("agent", a.agent.clone()),
        ("tool", a.tool.clone()),
        ("sha", hex::encode(a.args_sha256)),
        ("args", a.arguments.clone()),
        ("req", a.request_id.clone()),
        ("st", a.status.as_str().to_owned()),
        ("c", millis(a.created_at).to_string()),
        ("e", millis(a.expires_at).to_string()),
    ]
}

fn record(f: &HashMap<String, String>) -> Result<ApprovalRecord, StoreError> {
    let bad = || StoreError::Internal("a stored approval record is malformed".into());
    let get = |k: &str| f.get(k).cloned().ok_or_else(bad);
    let time = |k: &str| -> Result<DateTime<Utc>, StoreError> {
        get(k)?.parse::<i64>().map(from_millis).map_err(|_| bad())
    };
    let sha = hex::decode(get("sha")?).map_err(|_| bad())?;
    Ok(ApprovalRecord {
        id: get("id")?,
        agent: get("agent")?,
        tool: get("tool")?,
        args_sha256: sha.try_into().map_err(|_| bad())?,
        arguments: get("args")?,
        request_id: get("req")?,
        status: ApprovalStatus::parse(&get("st")?).ok_or_else(bad)?,
        created_at: time("c")?,
        expires_at: time("e")?,
        decided_at: if f.contains_key("d") {
            Some(time("d")?)
        } else {
            None
        },
    })
}

/// A record from an HGETALL reply, `None` when the hash was empty.
fn optional(r: &Reply<'_>) -> Result<Option<ApprovalRecord>, StoreError> {
    if r.len() == 0 {
        Ok(None)
    } else {
        record(&fields(r)?).map(Some)
    }
}

#[async_trait]
impl ApprovalStore for RedisStore {
    async fn request_approval(&self, rec: &ApprovalRecord) -> Result<ApprovalRecord, StoreError> {
        check_approval(rec)?;
        let now = self.opts.clock.now();
        let stored = new_pending(rec);
        let base = self.approvals_base();
        let mut inv = self.scripts.approvals.request_approval.prepare_invoke();
        inv.key(format!("{base}all"))
            .arg(&base)
            .arg(millis(now))
            .arg(ms(self.opts.settled_retention))
            .arg(&stored.id)
            .arg(&stored.agent)
            .arg(&stored.tool)
            .arg(hex::encode(stored.args_sha256));
        for (name, value) in stored_fields(&stored) {
            inv.arg(name).arg(value);
        }
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        match r.str(0)?.as_str() {
            "new" => Ok(stored.seen_at(now)),
            "existing" => Ok(record(&fields(&r.nested(1)?)?)?.seen_at(now)),
            "conflict" => Err(StoreError::Conflict(format!(
                "approval `{}` already exists",
                stored.id
            ))),
            other => Err(StoreError::Internal(format!(
                "request_approval answered `{other}`"
            ))),
        }
    }

    async fn find_approval(
        &self,
        agent: &str,
        tool: &str,
        hash: &[u8; 32],
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let now = self.opts.clock.now();
        let base = self.approvals_base();
        let mut inv = self.scripts.approvals.find_approval.prepare_invoke();
        inv.key(format!("{base}all"))
            .arg(&base)
            .arg(agent)
            .arg(tool)
            .arg(hex::encode(hash));
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(optional(&Reply::of(&v)?)?.filter(|a| {
            // The index names the newest record of the call; it may have lapsed or been denied.
            a.live_at(now) && a.agent == agent && a.tool == tool && a.args_sha256 == *hash
        }))
    }

    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        check_id("approval id", id)?;
        let now = self.opts.clock.now();
        let base = self.approvals_base();
        let status = if approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        let mut inv = self.scripts.approvals.decide_approval.prepare_invoke();
        inv.key(format!("{base}all"))
            .arg(&base)
            .arg(id)
            .arg(status.as_str())
            .arg(millis(now));
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(optional(&Reply::of(&v)?)?.map(|a| a.seen_at(now)))
    }

    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let now = self.opts.clock.now();
        let base = self.approvals_base();
        let mut inv = self.scripts.approvals.list_approvals.prepare_invoke();
        inv.key(format!("{base}all")).arg(&base);
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        let mut out = Vec::with_capacity(r.len());
        for i in 0..r.len() {
            let a = record(&fields(&r.nested(i)?)?)?.seen_at(now);
            if status.is_none_or(|st| a.status == st) {
                out.push(a);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }
}
