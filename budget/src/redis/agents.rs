//! Delegated agents (under the `{:keys}` tag, beside the keys they hold) and trust scores
//! (under `{:trust}`).

use std::collections::HashMap;

use redis::Value;

use super::{RedisStore, Reply, fields, hash_reply};
use crate::StoreError;
use crate::agents::{AgentRecord, check_agent};
use crate::keys::{from_millis, millis};
use crate::store::check_id;
use crate::trust::{NEGLIGIBLE_PENALTY, TrustParams, check_params, check_trust, decayed, trust_of};

impl RedisStore {
    fn trust_base(&self) -> String {
        format!("{}:{{:trust}}:", self.prefix)
    }
}

fn agent_fields(a: &AgentRecord) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("id", a.id.clone()),
        ("parent", a.parent.clone()),
        ("scope", a.scope.clone()),
        ("policy", a.policy.clone()),
        ("nar", a.narrowing.clone()),
        ("c", millis(a.created_at).to_string()),
    ];
    if let Some(b) = a.budget_limit {
        f.push(("b", b.to_string()));
    }
    if let Some(r) = a.revoked_at {
        f.push(("r", millis(r).to_string()));
    }
    f
}

fn agent(f: &HashMap<String, String>) -> Result<AgentRecord, StoreError> {
    let bad = || StoreError::Internal("a stored agent record is malformed".into());
    let get = |k: &str| f.get(k).cloned().ok_or_else(bad);
    let int = |k: &str| -> Result<Option<i64>, StoreError> {
        f.get(k)
            .map(|v| v.parse::<i64>().map_err(|_| bad()))
            .transpose()
    };
    Ok(AgentRecord {
        id: get("id")?,
        parent: get("parent")?,
        scope: get("scope")?,
        policy: get("policy")?,
        narrowing: get("nar")?,
        budget_limit: int("b")?,
        created_at: from_millis(int("c")?.ok_or_else(bad)?),
        revoked_at: int("r")?.map(from_millis),
    })
}

pub(super) async fn put(s: &RedisStore, a: &AgentRecord) -> Result<(), StoreError> {
    check_agent(a)?;
    let base = s.keys_base();
    let mut inv = s.scripts.put_agent.prepare_invoke();
    inv.key(format!("{base}gall"))
        .arg(&base)
        .arg(&a.id)
        .arg(&a.parent);
    for (name, value) in agent_fields(a) {
        inv.arg(name).arg(value);
    }
    let n: i64 = s
        .call(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "agent `{}` already exists",
            a.id
        )))
    }
}

pub(super) async fn by_id(s: &RedisStore, id: &str) -> Result<Option<AgentRecord>, StoreError> {
    let key = format!("{}g|{id}", s.keys_base());
    let v: Value = s
        .call(|mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await })
        .await?;
    let flat = hash_reply(&v)?;
    if flat.is_empty() {
        return Ok(None);
    }
    agent(&fields(&Reply(&flat))?).map(Some)
}

pub(super) async fn list(
    s: &RedisStore,
    parent: Option<&str>,
) -> Result<Vec<AgentRecord>, StoreError> {
    let base = s.keys_base();
    let mut inv = s.scripts.list_agents.prepare_invoke();
    inv.key(format!("{base}gall"))
        .arg(&base)
        .arg(parent.unwrap_or(""));
    let v: Value = s
        .call(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let r = Reply::of(&v)?;
    let mut out = (0..r.len())
        .map(|i| agent(&fields(&r.nested(i)?)?))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

pub(super) async fn revoke(s: &RedisStore, id: &str) -> Result<Option<Vec<String>>, StoreError> {
    let all = format!("{}gall", s.keys_base());
    super::revoke_tree(s, &s.scripts.revoke_agent, all, id).await
}

fn float(text: &str) -> Result<f64, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Internal(format!("a stored penalty is not a number: {text}")))
}

pub(super) async fn trust_record(
    s: &RedisStore,
    agent: &str,
    penalty: f64,
    success: bool,
    params: &TrustParams,
) -> Result<f64, StoreError> {
    check_trust(agent, penalty, params)?;
    let base = s.trust_base();
    let mut inv = s.scripts.trust_record.prepare_invoke();
    // `{:?}` prints the shortest text that parses back to the same f64, which Lua reads exactly.
    inv.key(format!("{base}all"))
        .arg(&base)
        .arg(agent)
        .arg(format!("{penalty:?}"))
        .arg(if success { "1" } else { "0" })
        .arg(params.half_life.as_millis() as i64)
        .arg(format!("{:?}", params.recovery))
        .arg(s.opts.clock.now().timestamp_millis())
        .arg(format!("{NEGLIGIBLE_PENALTY:?}"));
    let p: String = s
        .call(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    Ok(trust_of(float(&p)?))
}

pub(super) async fn trust_get(
    s: &RedisStore,
    agent: &str,
    params: &TrustParams,
) -> Result<f64, StoreError> {
    check_trust(agent, 0.0, params)?;
    let key = format!("{}t|{agent}", s.trust_base());
    let (p, t0): (Option<String>, Option<i64>) = s
        .call(|mut c| async move {
            redis::cmd("HMGET")
                .arg(key)
                .arg("p")
                .arg("t")
                .query_async(&mut c)
                .await
        })
        .await?;
    let now_ms = s.opts.clock.now().timestamp_millis();
    Ok(match (p, t0) {
        (Some(p), Some(t0)) => trust_of(decayed(float(&p)?, t0, now_ms, params)),
        _ => 1.0,
    })
}

pub(super) async fn trust_reset(s: &RedisStore, agent: &str) -> Result<(), StoreError> {
    check_id("agent", agent)?;
    // `trust_all` drops the agent from its set once it finds the record gone.
    let key = format!("{}t|{agent}", s.trust_base());
    s.call(|mut c| async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut c).await })
        .await
        .map(drop)
}

pub(super) async fn trust_all(
    s: &RedisStore,
    params: &TrustParams,
) -> Result<Vec<(String, f64)>, StoreError> {
    check_params(params)?;
    let base = s.trust_base();
    let mut inv = s.scripts.trust_all.prepare_invoke();
    inv.key(format!("{base}all")).arg(&base);
    let v: Value = s
        .call(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let r = Reply::of(&v)?;
    let now_ms = s.opts.clock.now().timestamp_millis();
    let mut out = Vec::with_capacity(r.len());
    for i in 0..r.len() {
        let row = r.nested(i)?;
        let p = decayed(float(&row.str(1)?)?, row.int(2)?, now_ms, params);
        if p > NEGLIGIBLE_PENALTY {
            out.push((row.str(0)?, trust_of(p)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
