//! The federated `tools/list`: every reached server asked at once, each list filtered by
//! its own connection, every page followed, names prefixed `{server}__`.

use bytes::Bytes;
use futures_util::future::join_all;
use pingora_proxy::Session;
use serde_json::{Value, json};

use super::{Fed, FedSession, MAX_PAGES, federated};
use crate::error::GateError;
use crate::flow::mcp::Conn;
use crate::flow::mcp::relay::Plan;

impl Fed<'_> {
    /// Every reached server's tools the connection allows, named `{server}__{tool}`, all
    /// pages of each; a server that fails is left out.
    pub(super) async fn list_tools(
        &self,
        msg: &Value,
        id: &Value,
        sid: &Option<(String, FedSession)>,
        session: &Session,
    ) -> Result<Value, GateError> {
        let conns = self.reached(sid)?;
        let lists = join_all(
            conns
                .iter()
                .map(|(c, upstream)| self.list_one(c, msg, id, upstream.as_deref(), session)),
        )
        .await;
        let mut all = Vec::new();
        for ((c, _), list) in conns.iter().zip(lists) {
            match list {
                Ok(tools) => all.extend(tools),
                Err(why) => self.failed(c.name, "tools_list", &why),
            }
        }
        let mut result = json!({ "tools": all });
        if self.modern {
            // The list is this agent's: no cache may serve it to another.
            result["cacheScope"] = json!("private");
            result["ttlMs"] = json!(0);
        }
        Ok(result)
    }

    async fn list_one(
        &self,
        c: &Conn<'_>,
        msg: &Value,
        id: &Value,
        upstream: Option<&str>,
        session: &Session,
    ) -> Result<Vec<Value>, String> {
        let mut page = msg.clone();
        if let Some(params) = page.get_mut("params").and_then(Value::as_object_mut) {
            params.remove("cursor");
        }
        let mut tools = Vec::new();
        for _ in 0..MAX_PAGES {
            let body = Bytes::from(page.to_string());
            let x = c
                .exchange(session, upstream, body, Some(id), Plan::ListTools)
                .await
                .map_err(|e| e.code().to_string())?;
            let result = &x.answer["result"];
            let Some(list) = result["tools"].as_array() else {
                return Err(format!("status {}, no tool list", x.status));
            };
            for t in list {
                let mut t = t.clone();
                let Some(own) = t["name"].as_str() else {
                    continue;
                };
                t["name"] = json!(federated(c.name, own));
                tools.push(t);
            }
            match result["nextCursor"].as_str() {
                Some(cursor) if !cursor.is_empty() => {
                    // The agent's params, when an object, else params of our own: indexing
                    // into a string or array the agent sent would panic.
                    match page.get_mut("params").and_then(Value::as_object_mut) {
                        Some(params) => {
                            params.insert("cursor".into(), json!(cursor));
                        }
                        None => page["params"] = json!({ "cursor": cursor }),
                    }
                }
                _ => return Ok(tools),
            }
        }
        Err(format!("more than {MAX_PAGES} pages"))
    }
}
