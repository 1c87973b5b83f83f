//! Validation of the `telemetry` (OpenTelemetry traces) and `approvals` (webhooks) sections.

use serde::Deserialize;
use serde_norway::Value;

use crate::providers::base_url;
use crate::types::{BaseUrl, Secret};
use crate::validate::Ctx;

/// Where traces go: off unless `otlp_endpoint` is set.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The OTLP/HTTP collector base (`http://127.0.0.1:4318`): spans are posted to
    /// `{otlp_endpoint}/v1/traces`. `None` turns tracing off.
    pub otlp_endpoint: Option<BaseUrl>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The share of new traces (requests without a sampled parent) that are recorded,
    /// 0.0 to 1.0. A request whose `traceparent` says sampled is always recorded.
    pub sample_ratio: f64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            otlp_endpoint: None,
            service_name: "tollgate".into(),
            sample_ratio: 1.0,
        }
    }
}

impl Telemetry {
    /// Whether any span may be recorded.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }
}

/// What is sent where when an approval is requested, decided or expires.
#[derive(Debug, Clone, Default)]
pub struct Approvals {
    pub webhook: Option<Webhook>,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: BaseUrl,
    /// The environment variable holding the HMAC key.
    pub secret_env: String,
    pub secret: Secret,
    pub format: WebhookFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// tollgate's own JSON event.
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
    sample_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    webhook: Option<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret_env: String,
    format: Option<String>,
}

pub(crate) fn telemetry(ctx: &mut Ctx, v: Value) -> Telemetry {
    let raw: RawTelemetry = ctx.node("telemetry", v).unwrap_or_default();
    let mut out = Telemetry::default();
    if let Some(url) = &raw.otlp_endpoint {
        out.otlp_endpoint = Some(base_url(ctx, "telemetry.otlp_endpoint", url));
    }
    if let Some(name) = raw.service_name {
        if name.is_empty() || name.len() > 128 {
            ctx.err("telemetry.service_name", "must be 1 to 128 characters");
        }
        out.service_name = name;
    }
    if let Some(r) = raw.sample_ratio {
        if !(0.0..=1.0).contains(&r) {
            ctx.err(
                "telemetry.sample_ratio",
                format!("{r} is not a ratio: expected a number from 0.0 to 1.0"),
            );
        } else {
            out.sample_ratio = r;
        }
    }
    out
}

pub(crate) fn approvals(ctx: &mut Ctx, v: Value) -> Approvals {
    let raw: RawApprovals = ctx.node("approvals", v).unwrap_or_default();
    let Some(w) = raw.webhook else {
        return Approvals::default();
    };
    let url = base_url(ctx, "approvals.webhook.url", &w.url);
    crate::infra::env_name(ctx, "approvals.webhook.secret_env", &w.secret_env);
    let secret = match (ctx.env)(&w.secret_env).filter(|s| !s.is_empty()) {
        Some(s) => Secret::new(s),
        None => {
            ctx.err(
                "approvals.webhook.secret_env",
                format!(
                    "environment variable {} is not set: webhooks are always signed",
                    w.secret_env
                ),
            );
            Secret::new(String::new())
        }
    };
    let format = ctx.keyword(
        "approvals.webhook.format",
        w.format.as_deref(),
        |t| match t {
            "json" => Some(WebhookFormat::Json),
            "slack" => Some(WebhookFormat::Slack),
            _ => None,
        },
        "json or slack",
        WebhookFormat::Json,
    );
    Approvals {
        webhook: Some(Webhook {
            url,
            secret_env: w.secret_env,
            secret,
            format,
        }),
    }
}
