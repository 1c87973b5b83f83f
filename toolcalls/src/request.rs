//! The request side: tool definitions and `tool_choice` an agent sends, checked before forwarding.

use serde_json::Value;
use tollgate_config::{OnViolation, Tools};
use tollgate_types::Api;

use crate::decide::{Verdict, decide_name};

/// What [`check_request`] did to a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    Unchanged,
    /// Definitions of these tools were removed (`on_violation: strip`).
    Stripped {
        removed: Vec<String>,
    },
    /// The request must be refused (403 `tool_not_allowed`); the body was not changed.
    ///
    /// `reason` is the decision's code (`tool_denied`, `not_in_allow_list`), prefixed with
    /// `forced_` when a `tool_choice` forces the tool.
    Blocked {
        tool: String,
        reason: String,
    },
}

/// Checks the tools a request declares and the tool it forces, stripping or blocking per policy.
///
/// A definition is disallowed when the tool matches a `deny` glob or misses a non-empty
/// `allow` list; tools that need approval stay declared, since the decision happens when
/// the model proposes a call. A `tool_choice` forcing a disallowed tool is always blocked.
///
/// Tools the provider runs itself (Responses' `web_search`, `file_search`,
/// `code_interpreter`, `mcp`, ...; chat's `web_search_options`; Anthropic's `mcp_servers`)
/// are governed by the same rules under their type's name (`mcp:<server_label>` for a
/// remote MCP server). Their calls never pass through tollgate, so a rule that would
/// escalate one denies it instead, and a remote MCP server is refused unless an `allow`
/// pattern starting with `mcp:` names it.
pub fn check_request(api: Api, body: &mut Value, tools: &Tools) -> RequestVerdict {
    let lists = match api {
        Api::ChatCompletions => CHAT_LISTS,
        Api::Responses => RESPONSES_LISTS,
        Api::AnthropicMessages => ANTHROPIC_LISTS,
        Api::Embeddings | Api::Completions => return RequestVerdict::Unchanged,
    };
    let Some(obj) = body.as_object() else {
        return RequestVerdict::Unchanged;
    };
    let denial = |name: &str| {
        hosted_denial(tools, name).or_else(|| match decide_name(tools, name) {
            Some(Verdict::Deny { reason }) => Some(reason),
            _ => None,
        })
    };

    for list in lists {
        if let Some((tool, reason)) = obj.get(list.choice).and_then(|c| forced(api, c, &denial)) {
            return RequestVerdict::Blocked {
                tool,
                reason: format!("forced_{reason}"),
            };
        }
    }

    let mut disallowed: Vec<(String, String)> = Vec::new();
    for name in top_level_hosted(api, obj) {
        if let Some(reason) = denial(&name) {
            disallowed.push((name, reason));
        }
    }
    for list in lists {
        for def in obj
            .get(list.tools)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for name in definition_names(api, list, def) {
                if let Some(reason) = denial(&name) {
                    disallowed.push((name, reason));
                }
            }
        }
    }
    if disallowed.is_empty() {
        return RequestVerdict::Unchanged;
    }
    if tools.on_violation == OnViolation::Block {
        let (tool, reason) = disallowed.swap_remove(0);
        return RequestVerdict::Blocked { tool, reason };
    }

    let mut removed: Vec<String> = Vec::new();
    for (name, _) in disallowed {
        if !removed.contains(&name) {
            removed.push(name);
        }
    }
    let is_removed = |name: &str| removed.iter().any(|r| r == name);
    let Some(obj) = body.as_object_mut() else {
        return RequestVerdict::Unchanged;
    };
    strip_top_level_hosted(api, obj, &is_removed);
    for list in lists {
        let Some(Value::Array(defs)) = obj.get_mut(list.tools) else {
            continue;
        };
        strip_definitions(api, list, defs, &is_removed);
        if defs.is_empty() {
            // The API rejects tool_choice and parallel_tool_calls without tools.
            for field in [list.tools, list.choice, list.parallel] {
                obj.remove(field);
            }
        } else if let Some(choice) = obj.get_mut(list.choice) {
            narrow_allowed_tools(api, choice, &is_removed);
        }
    }
    RequestVerdict::Stripped { removed }
}

/// One list of tool definitions and the request fields tied to it.
struct ToolList {
    tools: &'static str,
    choice: &'static str,
    parallel: &'static str,
    /// Chat's deprecated `functions`: bare `{name, ...}` entries, forced by `{"name": X}`.
    legacy: bool,
}

const CHAT_LISTS: &[ToolList] = &[
    ToolList {
        tools: "tools",
        choice: "tool_choice",
        parallel: "parallel_tool_calls",
        legacy: false,
    },
    ToolList {
        tools: "functions",
        choice: "function_call",
        parallel: "functions",
        legacy: true,
    },
];
const RESPONSES_LISTS: &[ToolList] = &[ToolList {
    tools: "tools",
    choice: "tool_choice",
    parallel: "parallel_tool_calls",
    legacy: false,
}];
// Anthropic has no parallel flag outside tool_choice, so `parallel` repeats `tool_choice`.
const ANTHROPIC_LISTS: &[ToolList] = &[ToolList {
    tools: "tools",
    choice: "tool_choice",
    parallel: "tool_choice",
    legacy: false,
}];

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The tool a `tool_choice` (or legacy `function_call`) names, for the API's shape of it.
fn named_choice(api: Api, choice: &Value) -> Option<&str> {
    if let Some(name) = choice
        .get("type")
        .is_none()
        .then(|| str_at(choice, &["name"]))
    {
        // Chat's legacy `function_call: {"name": X}`.
        return name;
    }
    match (api, choice.get("type")?.as_str()?) {
        (Api::ChatCompletions, "function") => str_at(choice, &["function", "name"]),
        (Api::ChatCompletions, "custom") => str_at(choice, &["custom", "name"]),
        (Api::Responses, "function" | "custom") => str_at(choice, &["name"]),
        (Api::AnthropicMessages, "tool") => str_at(choice, &["name"]),
        _ => None,
    }
}

/// The `allowed_tools` restriction of a tool_choice: its mode and its list of tool entries.
fn allowed_tools(api: Api, choice: &Value) -> Option<(&str, &Vec<Value>)> {
    if choice.get("type")?.as_str()? != "allowed_tools" {
        return None;
    }
    // Chat nests the restriction under `allowed_tools`; Responses puts it at the top level.
    let inner = match api {
        Api::ChatCompletions => choice.get("allowed_tools")?,
        _ => choice,
    };
    Some((
        inner.get("mode")?.as_str()?,
        inner.get("tools")?.as_array()?,
    ))
}

fn allowed_entry_name(api: Api, entry: &Value) -> Option<&str> {
    match (api, entry.get("type").and_then(Value::as_str)) {
        (Api::ChatCompletions, Some("custom")) => str_at(entry, &["custom", "name"]),
        (Api::ChatCompletions, _) => str_at(entry, &["function", "name"]),
        (_, Some("function" | "custom")) => str_at(entry, &["name"]),
        _ => None,
    }
}

/// The disallowed tool a tool_choice forces, with the denial reason.
fn forced(
    api: Api,
    choice: &Value,
    denial: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, String)> {
    if let Some(name) = named_choice(api, choice) {
        return denial(name).map(|r| (name.to_string(), r));
    }
    // `required` over a set of tools that are all disallowed forces one of them.
    let (mode, entries) = allowed_tools(api, choice)?;
    if mode != "required" {
        return None;
    }
    let mut first = None;
    for entry in entries {
        match allowed_entry_name(api, entry) {
            Some(name) => match denial(name) {
                Some(reason) => {
                    first.get_or_insert((name.to_string(), reason));
                }
                None => return None,
            },
            // A hosted tool the policy does not govern keeps the choice satisfiable.
            None => return None,
        }
    }
    first
}

/// The tool names one definition declares (a Responses namespace declares several).
fn definition_names(api: Api, list: &ToolList, def: &Value) -> Vec<String> {
    let name = match (api, def.get("type").and_then(Value::as_str)) {
        _ if list.legacy => str_at(def, &["name"]),
        (Api::ChatCompletions, Some("custom")) => str_at(def, &["custom", "name"]),
        (Api::ChatCompletions, _) => str_at(def, &["function", "name"]),
        (Api::Responses, Some("function" | "custom")) => str_at(def, &["name"]),
        (Api::Responses, Some("namespace")) => {
            return def
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| definition_names(api, list, t).into_iter().next())
                .collect();
        }
        // A tool the provider runs, named by its type; a remote MCP server by its label.
        (Api::Responses, Some("mcp")) => {
            let label = str_at(def, &["server_label"]).unwrap_or("unnamed");
            return vec![format!("{MCP_PREFIX}{label}")];
        }
        (Api::Responses, Some(kind)) => Some(kind),
        (Api::Responses, None) => None,
        // Every Anthropic tool has a name, including Anthropic-defined ones such as `bash`
        // that the client runs.
        _ => str_at(def, &["name"]),
    };
    name.map(str::to_string).into_iter().collect()
}

/// The name prefix of a remote MCP server's tools.
pub const MCP_PREFIX: &str = "mcp:";

/// Denial reasons of tools the provider runs itself.
pub const REASON_HOSTED_NEEDS_APPROVAL: &str = "hosted_tool_needs_approval";
pub const REASON_MCP_NOT_ALLOWED: &str = "remote_mcp_not_allowed";

/// Whether a tool definition names a tool the provider runs itself.
fn is_hosted(name: &str) -> bool {
    name.starts_with(MCP_PREFIX) || HOSTED.contains(&name)
}

/// Types of the tools OpenAI and Anthropic run at the provider.
const HOSTED: &[&str] = &[
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "image_generation",
    "computer_use_preview",
];

/// A hosted tool the rules cannot let through: one that would need approval (its calls
/// never reach tollgate), or a remote MCP server no `mcp:` allow pattern names.
fn hosted_denial(tools: &Tools, name: &str) -> Option<String> {
    if !is_hosted(name) {
        return None;
    }
    if name.starts_with(MCP_PREFIX) {
        let named = tools
            .allow
            .patterns
            .iter()
            .any(|p| p.starts_with(MCP_PREFIX));
        if !named || !tools.allow.is_match(name) {
            return Some(REASON_MCP_NOT_ALLOWED.into());
        }
    }
    match decide_name(tools, name) {
        Some(Verdict::Escalate) => Some(REASON_HOSTED_NEEDS_APPROVAL.into()),
        _ => None,
    }
}

/// Hosted tools asked for outside the tool lists: chat's `web_search_options`,
/// Anthropic's `mcp_servers`.
fn top_level_hosted(api: Api, obj: &serde_json::Map<String, Value>) -> Vec<String> {
    match api {
        Api::ChatCompletions if obj.contains_key("web_search_options") => {
            vec!["web_search".to_string()]
        }
        Api::AnthropicMessages => obj
            .get("mcp_servers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| format!("{MCP_PREFIX}{}", str_at(s, &["name"]).unwrap_or("unnamed")))
            .collect(),
        _ => Vec::new(),
    }
}

fn strip_top_level_hosted(
    api: Api,
    obj: &mut serde_json::Map<String, Value>,
    is_removed: &dyn Fn(&str) -> bool,
) {
    match api {
        Api::ChatCompletions if is_removed("web_search") => {
            obj.remove("web_search_options");
        }
        Api::AnthropicMessages => {
            if let Some(Value::Array(servers)) = obj.get_mut("mcp_servers") {
                servers.retain(|s| {
                    let name = format!("{MCP_PREFIX}{}", str_at(s, &["name"]).unwrap_or("unnamed"));
                    !is_removed(&name)
                });
                if servers.is_empty() {
                    obj.remove("mcp_servers");
                }
            }
        }
        _ => {}
    }
}

fn strip_definitions(
    api: Api,
    list: &ToolList,
    defs: &mut Vec<Value>,
    is_removed: &dyn Fn(&str) -> bool,
) {
    defs.retain_mut(|def| {
        if api == Api::Responses && def.get("type").and_then(Value::as_str) == Some("namespace") {
            let Some(Value::Array(inner)) = def.get_mut("tools") else {
                return true;
            };
            inner.retain(|t| !definition_names(api, list, t).iter().any(|n| is_removed(n)));
            return !inner.is_empty();
        }
        !definition_names(api, list, def)
            .iter()
            .any(|n| is_removed(n))
    });
}

/// Drops stripped tools from an `allowed_tools` choice; none left means no tool may be called.
fn narrow_allowed_tools(api: Api, choice: &mut Value, is_removed: &dyn Fn(&str) -> bool) {
    if allowed_tools(api, choice).is_none() {
        return;
    }
    let inner = match api {
        Api::ChatCompletions => &mut choice["allowed_tools"],
        _ => &mut *choice,
    };
    let Some(Value::Array(entries)) = inner.get_mut("tools") else {
        return;
    };
    entries.retain(|e| !allowed_entry_name(api, e).is_some_and(is_removed));
    if entries.is_empty() {
        // `forced` already refused a `required` set that only held disallowed tools.
        *choice = Value::String("none".to_string());
    }
}
