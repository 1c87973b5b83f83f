//! Agent key records: one hash per key plus a hash -> id index, all under the `{:keys}`
//! tag (a tag no tenant can have: tenants have no `:`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{Script, Value};

use super::{RedisStore, Reply};
use crate::StoreError;
use crate::keys::{KeyRecord, KeyStore, from_millis, millis};
use crate::store::check_id;

/// The scripts in `lua/keys/`.
#[derive(Debug)]
pub(super) struct Scripts {
    put_key: Script,
    update_key: Script,
    key_by_hash: Script,
    list_keys: Script,
    revoke_key: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            put_key: Script::new(include_str!("lua/keys/put_key.lua")),
            update_key: Script::new(include_str!("lua/keys/update_key.lua")),
            key_by_hash: Script::new(include_str!("lua/keys/key_by_hash.lua")),
            list_keys: Script::new(include_str!("lua/keys/list_keys.lua")),
            revoke_key: Script::new(include_str!("lua/keys/revoke_key.lua")),
        }
    }
}

/// The record as hash field/value pairs; absent optional fields are absent fields.
fn fields(k: &KeyRecord) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("id", k.id.clone()),
        ("agent", k.agent.clone()),
        ("sha", hex::encode(k.sha256)),
        ("c", millis(k.created_at).to_string()),
    ];
    let optional: [(&'static str, Option<String>); 5] = [
        ("label", k.label.clone()),
        ("e", k.expires_at.map(|t| millis(t).to_string())),
        ("r", k.revoked_at.map(|t| millis(t).to_string())),
        ("n", k.not_after.map(|t| millis(t).to_string())),
        ("p", k.parent_id.clone()),
    ];
    f.extend(
        optional
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (name, v))),
    );
    f
}

fn record(flat: &Reply<'_>) -> Result<KeyRecord, StoreError> {
    let (mut id, mut agent, mut sha, mut created) = (None, None, None, None);
    let mut k = KeyRecord {
        id: String::new(),
        agent: String::new(),
        sha256: [0; 32],
        label: None,
        created_at: DateTime::<Utc>::default(),
        expires_at: None,
        revoked_at: None,
        not_after: None,
        parent_id: None,
    };
    let time = |s: String| {
        s.parse::<i64>()
            .map(from_millis)
            .map_err(|_| StoreError::Internal("bad key time".into()))
    };
    for i in (0..flat.len()).step_by(2) {
        let value = flat.str(i + 1)?;
        match flat.str(i)?.as_str() {
            "id" => id = Some(value),
            "agent" => agent = Some(value),
            "sha" => sha = Some(value),
            "c" => created = Some(time(value)?),
            "label" => k.label = Some(value),
            "e" => k.expires_at = Some(time(value)?),
            "r" => k.revoked_at = Some(time(value)?),
            "n" => k.not_after = Some(time(value)?),
            "p" => k.parent_id = Some(value),
            _ => {}
        }
    }
    let missing = || StoreError::Internal("a stored key record lacks a required field".into());
    k.id = id.ok_or_else(missing)?;
    k.agent = agent.ok_or_else(missing)?;
    k.created_at = created.ok_or_else(missing)?;
    let bytes = hex::decode(sha.ok_or_else(missing)?).map_err(|_| missing())?;
    k.sha256 = bytes.try_into().map_err(|_| missing())?;
    Ok(k)
}

async fn write(s: &RedisStore, script: &Script, k: &KeyRecord) -> Result<i64, StoreError> {
    check_id("key id", &k.id)?;
    let base = s.keys_base();
    let mut inv = script.prepare_invoke();
    inv.key(format!("{base}all"))
        .arg(&base)
        .arg(&k.id)
        .arg(hex::encode(k.sha256));
    for (name, value) in fields(k) {
        inv.arg(name).arg(value);
    }
    s.call(|mut c| async move { inv.invoke_async(&mut c).await })
        .await
}

#[async_trait]
impl KeyStore for RedisStore {
    async fn put_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        match write(self, &self.scripts.keys.put_key, k).await? {
            1 => Ok(()),
            _ => Err(StoreError::Conflict(format!(
                "key `{}` or its hash is already stored",
                k.id
            ))),
        }
    }

    async fn update_key(&self, k: &KeyRecord) -> Result<bool, StoreError> {
        match write(self, &self.scripts.keys.update_key, k).await? {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(StoreError::Conflict(format!(
                "the hash of key `{}` belongs to another key",
                k.id
            ))),
        }
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        let base = self.keys_base();
        let mut inv = self.scripts.keys.key_by_hash.prepare_invoke();
        inv.key(format!("{base}all"))
            .arg(&base)
            .arg(hex::encode(hash));
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        if r.len() == 0 {
            Ok(None)
        } else {
            record(&r).map(Some)
        }
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let key = format!("{}k|{id}", self.keys_base());
        let v: Value = self
            .call(|mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await })
            .await?;
        let r = match &v {
            // RESP2 answers an array, RESP3 a map: read both as flat pairs.
            Value::Map(pairs) => {
                let flat: Vec<Value> = pairs
                    .iter()
                    .flat_map(|(a, b)| [a.clone(), b.clone()])
                    .collect();
                return if flat.is_empty() {
                    Ok(None)
                } else {
                    record(&Reply(&flat)).map(Some)
                };
            }
            other => Reply::of(other)?,
        };
        if r.len() == 0 {
            Ok(None)
        } else {
            record(&r).map(Some)
        }
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let base = self.keys_base();
        let mut inv = self.scripts.keys.list_keys.prepare_invoke();
        inv.key(format!("{base}all")).arg(&base);
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        let mut out = (0..r.len())
            .map(|i| record(&r.nested(i)?))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn revoke_key(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let all = format!("{}all", self.keys_base());
        super::revoke_tree(self, &self.scripts.keys.revoke_key, all, id).await
    }
}
