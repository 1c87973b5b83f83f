//! Approval webhooks: events derived from the approvals the store keeps, queued in the
//! store's durable outbox, delivered signed by a background task with retries. Nothing
//! here runs on a request's path.
//!
//! The approvals table is the source of truth. Every `SCAN_EVERY` the notifier lists the
//! approvals and queues each event a record has given rise to (requested; approved,
//! denied or expired) under a deterministic id (`apr_….requested`): the outbox queues an
//! id once, and remembers delivered ids, so however often (or by however many instances)
//! an event is derived, it is delivered once. Events survive a restart because the records
//! do; deliveries survive one because the outbox does.
//!
//! Delivery claims due items with a lease (no other instance sends them meanwhile), POSTs
//! each with `x-tollgate-signature: sha256=<hex HMAC-SHA256(secret, body)>`, and marks it
//! done on a 2xx; anything else is retried with exponential backoff.

mod payload;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tollgate_budget::OutboxItem;
use tollgate_config::{Webhook, WebhookFormat};

pub use payload::{Event, event, json_body, shape, signature, slack_body};

use crate::outbound::Outbound;
use crate::state::State;

const SCAN_EVERY: Duration = Duration::from_millis(500);
const DELIVER_EVERY: Duration = Duration::from_millis(250);
/// Items claimed per round.
const CLAIM: usize = 16;
/// How long a claimed item is withheld from other claims: longer than a delivery can take.
const LEASE: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The delay before attempt `n + 1` after `n` failures: 0.5 s, 1 s, 2 s, … up to 5 min.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_MAX)
}

/// The background task that queues and delivers approval events.
pub struct Notifier {
    pub state: Arc<State>,
}

#[async_trait::async_trait]
impl BackgroundService for Notifier {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let out = Outbound::default();
        let mut queued: HashSet<String> = HashSet::new();
        let mut scan = tokio::time::interval(SCAN_EVERY);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deliver = tokio::time::interval(DELIVER_EVERY);
        deliver.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = scan.tick() => self.scan(&mut queued).await,
                _ = deliver.tick() => self.deliver(&out).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Notifier {
    fn webhook(&self) -> Option<Webhook> {
        self.state.runtime().config.approvals.webhook.clone()
    }

    /// Queues the events of every approval not queued yet by this process. `queued` only
    /// spares store round trips; the outbox's own dedup is what guarantees once.
    async fn scan(&self, queued: &mut HashSet<String>) {
        if self.webhook().is_none() {
            return;
        }
        let store = &self.state.store;
        let records = match store.list_approvals(None).await {
            Ok(r) => r,
            Err(e) => return self.state.store_error("list_approvals", &e),
        };
        let now = self.state.backend().now();
        let mut live = HashSet::with_capacity(queued.len());
        for rec in &records {
            for ev in Event::of(rec, now) {
                let id = ev.id(&rec.id);
                if !queued.contains(&id) {
                    let body = event(ev, rec).to_string();
                    if let Err(e) = store.outbox_push(&id, &body).await {
                        self.state.store_error("outbox_push", &e);
                        continue;
                    }
                }
                live.insert(id);
            }
        }
        // Forgotten records drop out, so the set is bounded by the approvals kept.
        *queued = live;
    }

    async fn deliver(&self, out: &Outbound) {
        let Some(hook) = self.webhook() else {
            return;
        };
        let store = &self.state.store;
        let items = match store.outbox_claim(CLAIM, LEASE).await {
            Ok(items) => items,
            Err(e) => return self.state.store_error("outbox_claim", &e),
        };
        for item in items {
            let kind = serde_json::from_str::<serde_json::Value>(&item.body)
                .ok()
                .and_then(|v| v["type"].as_str().and_then(Event::parse))
                .map(Event::as_str)
                .unwrap_or("unknown");
            let result = match send(out, &hook, &item).await {
                Ok(()) => store.outbox_done(&item.id).await.map(|()| "delivered"),
                Err(why) => {
                    tracing::warn!(event = %item.id, attempts = item.attempts + 1, error = %why, "approval webhook not delivered, will retry");
                    store
                        .outbox_retry(&item.id, backoff(item.attempts))
                        .await
                        .map(|()| "retry")
                }
            };
            match result {
                Ok(r) => {
                    self.state
                        .metrics
                        .webhook_deliveries
                        .with_label_values(&[kind, r])
                        .inc();
                }
                Err(e) => self.state.store_error("outbox", &e),
            }
        }
    }
}

/// One delivery attempt: the body in the configured format, signed, stamped.
async fn send(out: &Outbound, hook: &Webhook, item: &OutboxItem) -> Result<(), String> {
    let event: serde_json::Value =
        serde_json::from_str(&item.body).map_err(|_| "the queued event is not JSON")?;
    let now = chrono::Utc::now().timestamp();
    let body = match hook.format {
        WebhookFormat::Json => json_body(&event, now),
        WebhookFormat::Slack => slack_body(&event),
    };
    let headers = [
        ("content-type", "application/json".to_string()),
        (
            "x-tollgate-signature",
            signature(hook.secret.expose().as_bytes(), &body),
        ),
        ("x-tollgate-timestamp", now.to_string()),
        (
            "x-tollgate-event",
            event["type"].as_str().unwrap_or_default().to_string(),
        ),
        ("x-tollgate-delivery", item.id.clone()),
    ];
    match out
        .post(&hook.url, "", &headers, Bytes::from(body), TIMEOUT)
        .await?
    {
        s if (200..300).contains(&s) => Ok(()),
        s => Err(format!("the receiver answered {s}")),
    }
}
