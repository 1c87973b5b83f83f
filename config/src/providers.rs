//! Validation of `providers` and `pricing`: where requests go and what they cost.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use crate::raw;
use crate::types::*;
use crate::validate::{Ctx, items};

pub(crate) fn base_url(ctx: &mut Ctx, path: &str, text: &str) -> BaseUrl {
    let fallback = BaseUrl {
        tls: false,
        host: "invalid".into(),
        port: 80,
        path: String::new(),
    };
    let Ok(uri) = text.parse::<http::Uri>() else {
        ctx.err(
            path,
            format!("`{text}` is not a URL: expected e.g. https://api.openai.com/v1"),
        );
        return fallback;
    };
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            ctx.err(
                path,
                format!("`{text}` must start with http:// or https://"),
            );
            return fallback;
        }
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        ctx.err(path, format!("`{text}` has no host"));
        return fallback;
    };
    if uri.query().is_some() {
        ctx.err(path, "must not carry a query string");
    }
    BaseUrl {
        tls,
        host: host.trim_matches(['[', ']']).to_string(),
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        path: uri.path().trim_end_matches('/').to_string(),
    }
}

pub(crate) fn providers(ctx: &mut Ctx, v: Value) -> Vec<Provider> {
    let mut out = Vec::new();
    for (i, item) in items(ctx, "providers", v).into_iter().enumerate() {
        let path = format!("providers[{i}]");
        let Some(raw) = ctx.node::<raw::Provider>(&path, item) else {
            continue;
        };
        let kind = ctx.keyword(
            &format!("{path}.kind"),
            Some(&raw.kind),
            |t| match t {
                "openai" => Some(ProviderKind::OpenAi),
                "azure" => Some(ProviderKind::Azure),
                "anthropic" => Some(ProviderKind::Anthropic),
                _ => None,
            },
            "openai, azure or anthropic",
            ProviderKind::OpenAi,
        );
        let base_url = base_url(ctx, &format!("{path}.base_url"), &raw.base_url);
        let api_key = match &raw.api_key_env {
            None => None,
            Some(name) => {
                crate::infra::env_name(ctx, &format!("{path}.api_key_env"), name);
                let value = (ctx.env)(name).filter(|v| !v.is_empty());
                if value.is_none() {
                    ctx.err(
                        format!("{path}.api_key_env"),
                        format!("environment variable {name} is not set"),
                    );
                }
                value.map(Secret::new)
            }
        };
        if kind == ProviderKind::Azure && raw.api_version.is_none() {
            ctx.err(
                format!("{path}.api_version"),
                "required for kind azure, e.g. 2024-10-21",
            );
        }
        if raw.models.is_empty() {
            ctx.err(
                format!("{path}.models"),
                "list the model globs this provider serves, e.g. [\"gpt-4o*\"]",
            );
        }
        let models = ctx.globs(&format!("{path}.models"), &raw.models);
        out.push(Provider {
            name: raw.name,
            kind,
            base_url,
            api_key_env: raw.api_key_env,
            api_key,
            models,
            fallback: raw.fallback,
            api_version: raw.api_version,
            deployments: raw.deployments,
            anthropic_version: raw
                .anthropic_version
                .unwrap_or_else(|| "2023-06-01".to_string()),
        });
    }
    let names: BTreeSet<&str> = out.iter().map(|p| p.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (i, p) in out.iter().enumerate() {
        if !seen.insert(p.name.as_str()) {
            problems.push((
                format!("providers[{i}].name"),
                format!("duplicate provider name `{}`", p.name),
            ));
        }
        for (j, f) in p.fallback.iter().enumerate() {
            if f == &p.name {
                problems.push((
                    format!("providers[{i}].fallback[{j}]"),
                    "a provider cannot fall back to itself".to_string(),
                ));
            } else if !names.contains(f.as_str()) {
                problems.push((
                    format!("providers[{i}].fallback[{j}]"),
                    format!("unknown provider `{f}`"),
                ));
            }
        }
    }
    for (path, message) in problems {
        ctx.err(path, message);
    }
    out
}

pub(crate) fn price(ctx: &mut Ctx, path: &str, v: Value) -> Option<Price> {
    let raw: raw::Price = ctx.node(path, v)?;
    Some(Price {
        input: ctx.usd(&format!("{path}.input_per_mtok"), Some(raw.input_per_mtok))?,
        output: ctx.usd(
            &format!("{path}.output_per_mtok"),
            Some(raw.output_per_mtok),
        )?,
        cached_input: ctx.usd(
            &format!("{path}.cached_input_per_mtok"),
            raw.cached_input_per_mtok,
        ),
        reasoning: ctx.usd(
            &format!("{path}.reasoning_per_mtok"),
            raw.reasoning_per_mtok,
        ),
        max_output_tokens: raw.max_output_tokens,
    })
}

pub(crate) fn pricing(ctx: &mut Ctx, v: Value) -> Pricing {
    let raw: raw::Pricing = ctx.node("pricing", v).unwrap_or_default();
    let mut overrides = BTreeMap::new();
    for (model, v) in raw.overrides {
        if let Some(p) = price(ctx, &format!("pricing.overrides.{model}"), v) {
            overrides.insert(model, p);
        }
    }
    let unknown_model = match raw.unknown_model {
        None => UnknownModel::Deny,
        Some(Value::String(s)) if s == "deny" => UnknownModel::Deny,
        Some(v @ Value::Mapping(_)) => price(ctx, "pricing.unknown_model", v)
            .map(UnknownModel::Price)
            .unwrap_or(UnknownModel::Deny),
        Some(_) => {
            ctx.err(
                "pricing.unknown_model",
                "expected `deny` or { input_per_mtok: N, output_per_mtok: N }",
            );
            UnknownModel::Deny
        }
    };
    Pricing {
        overrides,
        unknown_model,
    }
}
