//! Tool definitions as the model sees them: OpenAI renders function schemas into a
//! TypeScript-like `namespace functions { ... }` block in the system prompt. This renders the
//! same shape (descriptions at every depth, constraints as comments) so the count tracks the
//! real one, and adds a fixed allowance for the framing around it.

use serde_json::{Map, Value};

use super::Counter;

/// Framing around the rendered namespace (system-message join, header and end markers).
/// Calibrated on the cookbook's recorded counts (101 for gpt-4o, 105 for gpt-4) with margin.
pub(crate) const TOOLS_OVERHEAD: u64 = 12;
/// Built-in tools (web search, file search, code interpreter, computer use, MCP) inject
/// instructions whose size is not published.
pub(crate) const BUILTIN_TOOL_ALLOWANCE: u64 = 500;

pub(crate) struct FunctionDef<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub parameters: Option<&'a Value>,
}

/// Tools of a Chat Completions body: `tools` (function and custom) and legacy `functions`.
pub(crate) fn chat_tools(counter: &Counter, body: &Value) -> u64 {
    let mut functions = Vec::new();
    let mut other = 0;
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match tool.get("function") {
            Some(f) => functions.push(function_def(f)),
            None => other += BUILTIN_TOOL_ALLOWANCE + counter.json(tool),
        }
    }
    for f in body
        .get("functions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        functions.push(function_def(f));
    }
    other + functions_tokens(counter, &functions) + tool_choice(counter, body)
}

/// Tools of a Responses body: flat `{type: "function", name, description, parameters}`.
pub(crate) fn responses_tools(counter: &Counter, body: &Value) -> u64 {
    let mut functions = Vec::new();
    let mut other = 0;
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => functions.push(function_def(tool)),
            Some("custom") => other += counter.json(tool),
            _ => other += BUILTIN_TOOL_ALLOWANCE + counter.json(tool),
        }
    }
    other + functions_tokens(counter, &functions) + tool_choice(counter, body)
}

fn function_def(f: &Value) -> FunctionDef<'_> {
    FunctionDef {
        name: f.get("name").and_then(Value::as_str).unwrap_or(""),
        description: f.get("description").and_then(Value::as_str),
        parameters: f.get("parameters"),
    }
}

fn functions_tokens(counter: &Counter, functions: &[FunctionDef<'_>]) -> u64 {
    if functions.is_empty() {
        return 0;
    }
    TOOLS_OVERHEAD + counter.text(&render_namespace(functions))
}

/// A forced tool choice names the function in the prompt.
fn tool_choice(counter: &Counter, body: &Value) -> u64 {
    match body
        .get("tool_choice")
        .or_else(|| body.get("function_call"))
    {
        Some(Value::String(s)) if s == "none" || s == "required" => 1,
        Some(Value::Object(choice)) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| choice.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            4 + counter.text(name)
        }
        _ => 0,
    }
}

pub(crate) fn render_namespace(functions: &[FunctionDef<'_>]) -> String {
    let mut out = String::from("# Tools\n\n## functions\n\nnamespace functions {\n\n");
    for f in functions {
        if let Some(desc) = f.description {
            comment(&mut out, 0, desc);
        }
        let props = f
            .parameters
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object);
        match (f.parameters, props) {
            (Some(params), Some(props)) if !props.is_empty() => {
                out.push_str(&format!("type {} = (_: {{\n", f.name));
                object_properties(&mut out, params, props, 0);
                out.push_str("}) => any;\n\n");
            }
            _ => out.push_str(&format!("type {} = () => any;\n\n", f.name)),
        }
        if let Some(defs) = f
            .parameters
            .and_then(|p| p.get("$defs").or_else(|| p.get("definitions")))
        {
            out.push_str(&format!("// definitions: {defs}\n"));
        }
    }
    out.push_str("} // namespace functions");
    out
}

fn object_properties(out: &mut String, schema: &Value, props: &Map<String, Value>, indent: usize) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let pad = " ".repeat(indent);
    for (name, prop) in props {
        if let Some(desc) = prop.get("description").and_then(Value::as_str) {
            comment(out, indent, desc);
        }
        for key in CONSTRAINT_KEYWORDS {
            if let Some(v) = prop.get(*key) {
                comment(out, indent, &format!("{key}: {v}"));
            }
        }
        let optional = if required.contains(&name.as_str()) {
            ""
        } else {
            "?"
        };
        out.push_str(&format!("{pad}{name}{optional}: "));
        render_type(out, prop, indent);
        out.push_str(",\n");
    }
}

const CONSTRAINT_KEYWORDS: &[&str] = &[
    "default",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "examples",
];

fn render_type(out: &mut String, schema: &Value, indent: usize) {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let rendered: Vec<String> = values.iter().map(Value::to_string).collect();
        out.push_str(&rendered.join(" | "));
        return;
    }
    if let Some(c) = schema.get("const") {
        out.push_str(&c.to_string());
        return;
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            for (i, option) in options.iter().enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                render_type(out, option, indent);
            }
            return;
        }
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        out.push_str(reference.rsplit('/').next().unwrap_or(reference));
        return;
    }
    match schema.get("type") {
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            out.push_str(&names.join(" | "));
        }
        Some(Value::String(t)) => match t.as_str() {
            "object" => match schema.get("properties").and_then(Value::as_object) {
                Some(props) if !props.is_empty() => {
                    out.push_str("{\n");
                    object_properties(out, schema, props, indent + 2);
                    out.push_str(&" ".repeat(indent));
                    out.push('}');
                }
                _ => out.push_str("object"),
            },
            "array" => match schema.get("items") {
                Some(items) => {
                    render_type(out, items, indent);
                    out.push_str("[]");
                }
                None => out.push_str("any[]"),
            },
            other => out.push_str(other),
        },
        _ => out.push_str("any"),
    }
}

fn comment(out: &mut String, indent: usize, text: &str) {
    for line in text.lines() {
        out.push_str(&" ".repeat(indent));
        out.push_str("// ");
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_namespace_shape() {
        let params = json!({
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "array", "items": {"type": "integer"}, "maxItems": 7},
                "filters": {"type": "object", "properties": {"rain": {"type": "boolean"}}}
            },
            "required": ["location"]
        });
        let rendered = render_namespace(&[FunctionDef {
            name: "get_weather",
            description: Some("Get the weather"),
            parameters: Some(&params),
        }]);
        for expected in [
            "namespace functions {",
            "// Get the weather\ntype get_weather = (_: {",
            "// The city\nlocation: string,",
            "unit?: \"celsius\" | \"fahrenheit\",",
            "// maxItems: 7\ndays?: integer[],",
            "filters?: {\n  rain?: boolean,\n},",
            "}) => any;",
            "} // namespace functions",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in\n{rendered}"
            );
        }
    }

    #[test]
    fn function_without_parameters() {
        let rendered = render_namespace(&[FunctionDef {
            name: "ping",
            description: None,
            parameters: None,
        }]);
        assert!(rendered.contains("type ping = () => any;"));
    }
}
