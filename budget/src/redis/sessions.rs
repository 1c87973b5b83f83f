//! Sessions on Redis: one string per id under the `{:sessions}` tag, its idle lifetime the
//! key's expiry.

use std::time::Duration;

use async_trait::async_trait;

use super::RedisStore;
use crate::StoreError;
use crate::sessions::{SessionStore, check_session};

impl RedisStore {
    fn session_key(&self, id: &str) -> String {
        format!("{}:{{:sessions}}:{id}", self.prefix)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2).max(1)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn session_put(&self, id: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        check_session(id, value)?;
        let (key, value) = (self.session_key(id), value.to_owned());
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ms(ttl))
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn session_get(&self, id: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        check_session(id, "")?;
        let key = self.session_key(id);
        self.call(|mut c| async move {
            redis::cmd("GETEX")
                .arg(key)
                .arg("PX")
                .arg(ms(ttl))
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
    }

    async fn session_delete(&self, id: &str) -> Result<(), StoreError> {
        check_session(id, "")?;
        let key = self.session_key(id);
        self.call(|mut c| async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await })
            .await
    }
}
