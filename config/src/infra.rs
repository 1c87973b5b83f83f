//! Validation of the infrastructure sections: `server`, `store`, `audit` and `trust`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_norway::Value;

use crate::raw;
use crate::types::*;
use crate::units::parse_bytes;
use crate::validate::Ctx;

pub(crate) fn socket(ctx: &mut Ctx, path: &str, text: Option<&str>, default: &str) -> SocketAddr {
    let text = text.unwrap_or(default);
    text.parse().unwrap_or_else(|_| {
        ctx.err(
            path,
            format!("`{text}` is not an address: expected HOST:PORT like 127.0.0.1:8080"),
        );
        default.parse().expect("default address parses")
    })
}

pub(crate) fn bytes(ctx: &mut Ctx, path: &str, v: Option<raw::Scalar>, default: u64) -> u64 {
    match v {
        None => default,
        Some(raw::Scalar(s)) => parse_bytes(&s).unwrap_or_else(|e| {
            ctx.err(path, e);
            default
        }),
    }
}

pub(crate) fn env_name(ctx: &mut Ctx, path: &str, name: &str) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        ctx.err(
            path,
            format!("`{name}` is not an environment variable name: expected e.g. OPENAI_API_KEY (secrets are never written in the file)"),
        );
    }
}

pub(crate) fn server(ctx: &mut Ctx, v: Value) -> Server {
    let raw: raw::Server = ctx.node("server", v).unwrap_or_default();
    let t = raw.timeouts.unwrap_or_default();
    let admin_token_env = raw
        .admin_token_env
        .unwrap_or_else(|| "TOLLGATE_ADMIN_TOKEN".to_string());
    env_name(ctx, "server.admin_token_env", &admin_token_env);
    let admin_token = (ctx.env)(&admin_token_env)
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    if raw.threads == Some(0) {
        ctx.err("server.threads", "must be at least 1");
    }
    let max_response_bytes = bytes(
        ctx,
        "server.max_response_bytes",
        raw.max_response_bytes,
        64 << 20,
    );
    let max_event_bytes = bytes(ctx, "server.max_event_bytes", raw.max_event_bytes, 16 << 20);
    let max_buffered_bytes = bytes(
        ctx,
        "server.max_buffered_bytes",
        raw.max_buffered_bytes,
        512 << 20,
    );
    for (path, n) in [
        ("server.max_response_bytes", max_response_bytes),
        ("server.max_event_bytes", max_event_bytes),
    ] {
        if n < 4096 {
            ctx.err(path, "must be at least 4KiB");
        } else if n > max_buffered_bytes {
            ctx.err(
                path,
                "must not be larger than server.max_buffered_bytes, which bounds all buffers together",
            );
        }
    }
    let request_header = ctx.duration(
        "server.timeouts.request_header",
        t.request_header.as_ref(),
        Duration::from_secs(10),
    );
    if request_header.is_zero() {
        ctx.err("server.timeouts.request_header", "must be longer than 0s");
    }
    Server {
        listen: socket(ctx, "server.listen", raw.listen.as_deref(), "0.0.0.0:8080"),
        admin_listen: socket(
            ctx,
            "server.admin_listen",
            raw.admin_listen.as_deref(),
            "127.0.0.1:9090",
        ),
        admin_token_env,
        admin_token,
        max_body_bytes: bytes(ctx, "server.max_body_bytes", raw.max_body_bytes, 10 << 20),
        max_response_bytes,
        max_event_bytes,
        max_buffered_bytes,
        timeouts: Timeouts {
            connect: ctx.duration(
                "server.timeouts.connect",
                t.connect.as_ref(),
                Duration::from_secs(5),
            ),
            first_byte: ctx.duration(
                "server.timeouts.first_byte",
                t.first_byte.as_ref(),
                Duration::from_secs(120),
            ),
            idle: ctx.duration(
                "server.timeouts.idle",
                t.idle.as_ref(),
                Duration::from_secs(300),
            ),
            request_header,
        },
        fallback: fallback(ctx, raw.fallback.unwrap_or_default()),
        threads: raw.threads,
    }
}

/// `server.fallback`: retry statuses as codes (`429`) or classes (`5xx`), ejection.
fn fallback(ctx: &mut Ctx, raw: raw::Fallback) -> Fallback {
    let mut f = Fallback::default();
    if let Some(statuses) = raw.statuses {
        f.statuses.clear();
        for (i, raw::Scalar(text)) in statuses.into_iter().enumerate() {
            let path = format!("server.fallback.statuses[{i}]");
            let range = match text.strip_suffix("xx").map(str::parse::<u16>) {
                Some(Ok(class)) => class * 100..=class * 100 + 99,
                Some(Err(_)) => 0..=0,
                None => match text.parse::<u16>() {
                    Ok(code) => code..=code,
                    Err(_) => 0..=0,
                },
            };
            if !(400..=599).contains(range.start()) {
                ctx.err(
                    path,
                    format!("`{text}` is not an error status: expected 400-599 or 4xx / 5xx"),
                );
                continue;
            }
            f.statuses.extend(range);
        }
    }
    if let Some(n) = raw.eject_after {
        f.eject_after = n;
    }
    f.cool_down = ctx.duration(
        "server.fallback.cool_down",
        raw.cool_down.as_ref(),
        f.cool_down,
    );
    if f.eject_after > 0 && f.cool_down.is_zero() {
        ctx.err(
            "server.fallback.cool_down",
            "must be longer than 0s (set eject_after: 0 to never eject)",
        );
    }
    f
}

pub(crate) fn trust(ctx: &mut Ctx, v: Value) -> Trust {
    let raw: raw::Trust = ctx.node("trust", v).unwrap_or_default();
    let mut t = Trust::default();
    t.half_life = ctx.duration("trust.half_life", raw.half_life.as_ref(), t.half_life);
    if t.half_life.is_zero() {
        ctx.err("trust.half_life", "must be longer than 0s");
    }
    if let Some(r) = raw.recovery {
        if (0.0..1.0).contains(&r) {
            t.recovery = r;
        } else {
            ctx.err("trust.recovery", "must be at least 0 and below 1");
        }
    }
    for (name, weight) in raw.penalties {
        let path = format!("trust.penalties.{name}");
        if !(0.0..=10.0).contains(&weight) {
            ctx.err(&path, "must be between 0 and 10");
            continue;
        }
        match name.as_str() {
            "policy_violation" => t.policy_violation = weight,
            "guardrail_block" => t.guardrail_block = weight,
            "tool_denied" => t.tool_denied = weight,
            "upstream_error" => t.upstream_error = weight,
            _ => ctx.err(&path, "unknown event: expected policy_violation, guardrail_block, tool_denied or upstream_error"),
        }
    }
    t
}

/// Seed nodes a cluster config may list; the client discovers the others.
const MAX_SEEDS: usize = 64;
/// Replicas a write may wait for (Redis Cluster runs a handful per master at most).
const MAX_REPLICAS_ACK: u32 = 16;

fn is_redis_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    rest.is_some_and(|r| !r.is_empty())
}

/// A URL as an error may show it: a password in `user:password@` never reaches a log.
fn redact_userinfo(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

pub(crate) fn store(ctx: &mut Ctx, v: Value) -> Store {
    let raw: raw::Store = ctx.node("store", v).unwrap_or_default();
    let kind = ctx.keyword(
        "store.kind",
        raw.kind.as_deref(),
        |t| match t {
            "embedded" => Some(StoreKind::Embedded),
            "redis" => Some(StoreKind::Redis),
            _ => None,
        },
        "embedded or redis",
        StoreKind::Embedded,
    );
    let on_error = ctx.keyword(
        "store.on_error",
        raw.on_error.as_deref(),
        |t| match t {
            "deny" => Some(OnError::Deny),
            "allow" => Some(OnError::Allow),
            _ => None,
        },
        "deny or allow",
        OnError::Deny,
    );
    let cluster = raw.cluster.unwrap_or_default();
    if cluster.is_empty() {
        let url = raw.url.as_deref().unwrap_or("redis://127.0.0.1:6379/0");
        if !is_redis_url(url) {
            ctx.err(
                "store.url",
                format!("`{url}` is not a Redis URL: expected redis://HOST:PORT/DB"),
            );
        }
    } else {
        if raw.url.is_some() {
            ctx.err(
                "store.cluster",
                "give either url (one Redis) or cluster (seed nodes), not both",
            );
        }
        if kind != StoreKind::Redis {
            ctx.err("store.cluster", "only for kind: redis");
        }
        if cluster.len() > MAX_SEEDS {
            ctx.err(
                "store.cluster",
                format!("at most {MAX_SEEDS} seed nodes (the client learns the rest)"),
            );
        }
        for (i, seed) in cluster.iter().enumerate() {
            // A cluster has only database 0: a path would be refused at connect time.
            let path = seed.split_once("://").map_or("", |(_, r)| r);
            if !is_redis_url(seed) || path.contains('/') && !path.ends_with("/0") {
                ctx.err(
                    format!("store.cluster[{i}]"),
                    format!(
                        "`{}` is not a cluster node URL: expected redis://HOST:PORT or rediss://HOST:PORT",
                        redact_userinfo(seed)
                    ),
                );
            }
        }
        let tls = cluster
            .iter()
            .filter(|s| s.starts_with("rediss://"))
            .count();
        if tls != 0 && tls != cluster.len() {
            ctx.err(
                "store.cluster",
                "mixes redis:// and rediss://: a cluster's nodes all speak TLS or none do",
            );
        }
    }
    let replicas_ack = raw.replicas_ack.unwrap_or(0);
    if replicas_ack > MAX_REPLICAS_ACK {
        ctx.err(
            "store.replicas_ack",
            format!("must be between 0 and {MAX_REPLICAS_ACK}"),
        );
    }
    if replicas_ack > 0 && kind != StoreKind::Redis {
        ctx.err("store.replicas_ack", "only for kind: redis");
    }
    let url = raw
        .url
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_string());
    let reservation_ttl = ctx.duration(
        "store.reservation_ttl",
        raw.reservation_ttl.as_ref(),
        Duration::from_secs(600),
    );
    if reservation_ttl < Duration::from_secs(1) {
        ctx.err("store.reservation_ttl", "must be at least 1s");
    }
    Store {
        kind,
        path: PathBuf::from(raw.path.unwrap_or_else(|| "./tollgate-data".to_string())),
        url,
        cluster,
        replicas_ack,
        on_error,
        reservation_ttl,
        key_prefix: raw.key_prefix.unwrap_or_else(|| "tg".to_string()),
    }
}

pub(crate) fn audit(ctx: &mut Ctx, v: Value) -> Audit {
    let raw: raw::Audit = ctx.node("audit", v).unwrap_or_default();
    let max_bytes = bytes(ctx, "audit.max_bytes", raw.max_bytes, 100 << 20);
    if max_bytes < 4096 {
        ctx.err("audit.max_bytes", "must be at least 4KiB");
    }
    Audit {
        path: PathBuf::from(
            raw.path
                .unwrap_or_else(|| "./tollgate-audit.jsonl".to_string()),
        ),
        max_bytes,
        redis_stream: raw.redis_stream,
    }
}
