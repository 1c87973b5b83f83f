//! Delegated agents, under the `{:keys}` tag beside the keys they hold: one hash per agent,
//! a set of children per parent and the set of all.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::{Script, Value};

use super::{RedisStore, Reply, fields, hash_reply};
use crate::StoreError;
use crate::agents::{AgentRecord, AgentStore, check_agent};
use crate::keys::{from_millis, millis};

/// The scripts in `lua/agents/`.
#[derive(Debug)]
pub(super) struct Scripts {
    put_agent: Script,
    list_agents: Script,
    revoke_agent: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            put_agent: Script::new(include_str!("lua/agents/put_agent.lua")),
            list_agents: Script::new(include_str!("lua/agents/list_agents.lua")),
            revoke_agent: Script::new(include_str!("lua/agents/revoke_agent.lua")),
        }
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

#[async_trait]
impl AgentStore for RedisStore {
    async fn put_agent(&self, a: &AgentRecord) -> Result<(), StoreError> {
        check_agent(a)?;
        let base = self.keys_base();
        let mut inv = self.scripts.agents.put_agent.prepare_invoke();
        inv.key(format!("{base}gall"))
            .arg(&base)
            .arg(&a.id)
            .arg(&a.parent);
        for (name, value) in agent_fields(a) {
            inv.arg(name).arg(value);
        }
        let n: i64 = self
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

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let key = format!("{}g|{id}", self.keys_base());
        let v: Value = self
            .call(|mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await })
            .await?;
        let flat = hash_reply(&v)?;
        if flat.is_empty() {
            return Ok(None);
        }
        agent(&fields(&Reply(&flat))?).map(Some)
    }

    async fn list_agents(&self, parent: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        let base = self.keys_base();
        let mut inv = self.scripts.agents.list_agents.prepare_invoke();
        inv.key(format!("{base}gall"))
            .arg(&base)
            .arg(parent.unwrap_or(""));
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        let mut out = (0..r.len())
            .map(|i| agent(&fields(&r.nested(i)?)?))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn revoke_agent(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let all = format!("{}gall", self.keys_base());
        super::revoke_tree(self, &self.scripts.agents.revoke_agent, all, id).await
    }
}
