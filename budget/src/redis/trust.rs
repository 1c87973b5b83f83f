//! Trust scores on Redis: one hash per agent (`p` penalty, `t` updated ms) and the set of
//! agents with a penalty, all under the `{:trust}` tag.

use async_trait::async_trait;
use redis::{Script, Value};

use super::{RedisStore, Reply};
use crate::StoreError;
use crate::store::check_id;
use crate::trust::{
    NEGLIGIBLE_PENALTY, TrustParams, TrustStore, check_params, check_trust, decayed, trust_of,
};

/// The scripts in `lua/trust/`.
#[derive(Debug)]
pub(super) struct Scripts {
    trust_record: Script,
    trust_all: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            trust_record: Script::new(include_str!("lua/trust/trust_record.lua")),
            trust_all: Script::new(include_str!("lua/trust/trust_all.lua")),
        }
    }
}
impl RedisStore {
    fn trust_base(&self) -> String {
        format!("{}:{{:trust}}:", self.prefix)
    }
}

fn float(text: &str) -> Result<f64, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Internal(format!("a stored penalty is not a number: {text}")))
}

#[async_trait]
impl TrustStore for RedisStore {
    async fn trust_record(
        &self,
        agent: &str,
        penalty: f64,
        success: bool,
        params: &TrustParams,
    ) -> Result<f64, StoreError> {
        check_trust(agent, penalty, params)?;
        let base = self.trust_base();
        let mut inv = self.scripts.trust.trust_record.prepare_invoke();
        // `{:?}` prints the shortest text that parses back to the same f64, which Lua reads exactly.
        inv.key(format!("{base}all"))
            .arg(&base)
            .arg(agent)
            .arg(format!("{penalty:?}"))
            .arg(if success { "1" } else { "0" })
            .arg(params.half_life.as_millis() as i64)
            .arg(format!("{:?}", params.recovery))
            .arg(self.opts.clock.now().timestamp_millis())
            .arg(format!("{NEGLIGIBLE_PENALTY:?}"));
        let p: String = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(trust_of(float(&p)?))
    }

    async fn trust_get(&self, agent: &str, params: &TrustParams) -> Result<f64, StoreError> {
        check_trust(agent, 0.0, params)?;
        let key = format!("{}t|{agent}", self.trust_base());
        let (p, t0): (Option<String>, Option<i64>) = self
            .call(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("p")
                    .arg("t")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let now_ms = self.opts.clock.now().timestamp_millis();
        Ok(match (p, t0) {
            (Some(p), Some(t0)) => trust_of(decayed(float(&p)?, t0, now_ms, params)),
            _ => 1.0,
        })
    }

    async fn trust_reset(&self, agent: &str) -> Result<(), StoreError> {
        check_id("agent", agent)?;
        // `trust_all` drops the agent from its set once it finds the record gone.
        let key = format!("{}t|{agent}", self.trust_base());
        self.call(
            |mut c| async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut c).await },
        )
        .await
        .map(drop)
    }

    async fn trust_all(&self, params: &TrustParams) -> Result<Vec<(String, f64)>, StoreError> {
        check_params(params)?;
        let base = self.trust_base();
        let mut inv = self.scripts.trust.trust_all.prepare_invoke();
        inv.key(format!("{base}all")).arg(&base);
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        let now_ms = self.opts.clock.now().timestamp_millis();
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
}
