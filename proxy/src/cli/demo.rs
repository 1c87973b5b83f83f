//! `tollgate demo`: the offline first run. A built-in config, the demo provider and the
//! demo MCP server on localhost (served by the same process), an embedded store and audit
//! trail in a temp dir; no network.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use pingora_core::apps::http_app::HttpServer;
use pingora_core::services::listening::Service;
use tollgate_config::Config;

use super::demo_mcp::DemoMcp;
use super::demo_provider::DemoProvider;

/// A port on 127.0.0.1: the preferred one if it is free, else any free one (0 prefers
/// none).
fn port(preferred: u16) -> u16 {
    TcpListener::bind(("127.0.0.1", preferred))
        .or_else(|_| TcpListener::bind("127.0.0.1:0"))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

/// Where the demo's own servers listen.
struct Ports {
    listen: u16,
    admin: u16,
    mock: u16,
    mcp: u16,
}

fn config_text(
    Ports {
        listen,
        admin,
        mock,
        mcp,
    }: &Ports,
    dir: &std::path::Path,
    key_sha256: &str,
) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:{listen}
  admin_listen: 127.0.0.1:{admin}
  admin_token_env: TOLLGATE_DEMO_ADMIN_TOKEN
store: {{ kind: embedded, path: "{data}" }}
audit: {{ path: "{audit}" }}
providers:
  - name: mock
    kind: openai
    base_url: http://127.0.0.1:{mock}/v1
    api_key_env: TOLLGATE_DEMO_PROVIDER_KEY
    models: ["gpt-4o*", "gpt-4.1*", "text-embedding-3-*"]
mcp_servers:
  demo: {{ url: "http://127.0.0.1:{mcp}/mcp" }}
scopes:
  demo:                 {{ budget: {{ limit_usd: 5, period: day }} }}
  demo/assistant:       {{ budget: {{ limit_usd: 1, period: day }} }}
policies:
  assistant:
    models: {{ allow: ["gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small"] }}
    max_request_usd: 0.25
    run_budget_usd: 0.10
    rate: {{ rpm: 120 }}
    tools:
      allow: ["web_search", "read_*", "send_email"]
      deny: ["delete_*"]
      approve: ["send_email"]
      on_violation: strip
    guardrails:
      input:     {{ pii: redact, secrets: block }}
      output:    {{ pii: redact, secrets: redact }}
      tool_args: {{ pii: block,  secrets: block }}
    mcp:
      demo:
        tools: {{ allow: ["echo", "add"], deny: ["delete_*"] }}
        guardrails:
          tool_args:    {{ secrets: block }}
          tool_results: {{ pii: redact, secrets: redact }}
        cost_usd: {{ default: 0.001 }}
        rate: {{ rpm: 60, concurrent: 4 }}
agents:
  demo-agent: {{ scope: demo/assistant/demo-agent, policy: assistant }}
keys:
  - {{ id: k_demo, agent: demo-agent, sha256: "{key_sha256}" }}
"#,
        data = dir.join("data").display(),
        audit = dir.join("audit.jsonl").display(),
    )
}

pub fn run(listen: u16) -> ExitCode {
    super::init_logging();
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    let provider_key = crate::keys::generate().secret.replace("tg_", "sk-mock-");
    // One fixed port asked for fixed ports for all; 0 for free ones for all.
    let fixed = |p: u16| if listen == 0 { 0 } else { p };
    let agent_key = crate::keys::generate();
    let admin_token = crate::keys::generate().secret.replace("tg_", "adm_");
    let ports = Ports {
        listen: port(listen),
        admin: port(fixed(9090)),
        mock: port(fixed(18080)),
        mcp: port(fixed(18081)),
    };
    let text = config_text(&ports, &dir, &crate::keys::hash_hex(&agent_key.sha256));
    let env = |name: &str| match name {
        "TOLLGATE_DEMO_PROVIDER_KEY" => Some(provider_key.clone()),
        "TOLLGATE_DEMO_ADMIN_TOKEN" => Some(admin_token.clone()),
        _ => None,
    };
    let config = match Config::from_yaml(&text, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("the built-in demo config is invalid (a bug):\n{e}");
            return ExitCode::from(1);
        }
    };
    let state = match crate::server::state(config, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    std::fs::write(dir.join("tollgate.yaml"), &text).ok();
    print_guide(&ports, &agent_key.secret, &admin_token, &dir);
    crate::server::run_with(state, |server| {
        let mut provider = Service::new(
            "demo provider".to_string(),
            HttpServer::new_app(DemoProvider {
                api_key: provider_key,
            }),
        );
        provider.threads = Some(1);
        provider.add_tcp(&format!("127.0.0.1:{}", ports.mock));
        server.add_service(provider);
        let mut mcp = Service::new("demo MCP server".to_string(), HttpServer::new_app(DemoMcp));
        mcp.threads = Some(1);
        mcp.add_tcp(&format!("127.0.0.1:{}", ports.mcp));
        server.add_service(mcp);
    })
}

fn print_guide(ports: &Ports, key: &str, token: &str, dir: &std::path::Path) {
    let base = format!("http://127.0.0.1:{}/v1", ports.listen);
    let mcp = format!("http://127.0.0.1:{}/mcp/demo", ports.listen);
    let admin = ports.admin;
    // A reader that went away (a closed pipe) must not take the demo down with it.
    let _ = writeln!(
        std::io::stdout(),
        r#"
tollgate demo: offline, a built-in mock provider answers. Everything lives in {dir}.

  base URL    {base}
  agent key   {key}
  MCP server  {mcp}
  admin API   http://127.0.0.1:{admin}  (token {token})

A chat through tollgate (the mock answers `SAY: ...` with that text):

  curl -s {base}/chat/completions \
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "SAY: Hello from behind tollgate"}}]}}'

The same with the official Python SDK (pip install openai):

  python3 - <<'PY'
  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{key}")
  reply = client.chat.completions.create(
      model="gpt-4o-mini", messages=[{{"role": "user", "content": "SAY: Hello from behind tollgate"}}])
  print(reply.choices[0].message.content)
  PY

An MCP tool call through tollgate to the demo's MCP server (tools `echo`, `add` and
`delete_everything`; the policy allows the first two and denies the third, so tools/list
never shows it). Any MCP client works with the key above as its bearer token:

  curl -s {mcp} \
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \
    -H "Accept: application/json, text/event-stream" \
    -d '{{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {{"name": "add", "arguments": {{"a": 2, "b": 3}}}}}}'

The same with "name": "delete_everything", "arguments": {{}} is refused before the server
sees it, as a tool result the model can read ("isError": true, "[tollgate] tool_denied: ...").

What it cost, per scope:

  TOLLGATE_ADMIN_TOKEN={token} tollgate budgets show --admin-url http://127.0.0.1:{admin}

Try a prompt with a secret in it (AKIA...), a model outside the allow-list (gpt-4o), or
a tool call (`CALL: delete_repo {{}}`). Ctrl-C stops the demo.
"#,
        dir = dir.display()
    );
}
