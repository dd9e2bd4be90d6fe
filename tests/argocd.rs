//! The Argo CD health checks and Canary actions in `charts/kaizen/argocd/`, run by a real Lua 5.1
//! interpreter (Argo CD runs gopher-lua, a Lua 5.1) against the testdata named by each
//! `health_test.yaml` and `actions/action_test.yaml`, in Argo CD's own test format.
//!
//! The harness hands the object to a script as the global `obj`, as Argo CD does, and reads back the
//! result through a small JSON encoder. `os.date` is pinned to 2026-01-01T00:00:00Z so an action's
//! timestamp can be compared.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/kaizen/argocd/kaizen.dev")
}

/// A Lua expression that builds `value`.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for b in s.bytes() {
                match b {
                    b'"' | b'\\' => out.extend(['\\', b as char]),
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", lua_literal(&Value::String(k.clone())), lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Encodes the script's result as JSON: tables with keys 1..n are arrays.
const ENCODER: &str = r#"
local function encode(v)
  local t = type(v)
  if t == "nil" then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then return string.format("%.14g", v)
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif t == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    if n > 0 and #v == n then
      local parts = {}
      for i = 1, n do parts[i] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = encode(tostring(k)) .. ":" .. encode(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot encode a " .. t)
end
"#;

/// Runs `script` with `obj` bound to `input` in Lua 5.1 and returns what it returns.
fn run_lua(script: &Path, input: &Value) -> Value {
    let body = std::fs::read_to_string(script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let program = format!(
        "{ENCODER}\nos.date = function() return \"2026-01-01T00:00:00Z\" end\nobj = {}\n\
         local result = (function()\n{body}\nend)()\nio.write(encode(result))\n",
        lua_literal(input)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 runs (Debian package lua5.1; .ci/run installs it)");
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: result is not JSON ({e}): {}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lua cannot tell an empty list from an empty map; neither can this comparison.
fn normalize(v: Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Object(Default::default()),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Value,
    input_path: String,
}

#[test]
fn every_health_check_gives_the_status_its_tests_expect() {
    let mut ran = 0;
    for kind in ["Incident", "ActionItem", "Canary"] {
        let dir = root().join(kind);
        let tests: HealthTests =
            serde_yaml::from_value(serde_yaml::to_value(yaml(&dir.join("health_test.yaml"))).unwrap())
                .expect("health_test.yaml in Argo CD's format");
        assert!(tests.tests.len() >= 4, "{kind}: cover every status");
        for t in tests.tests {
            let got = run_lua(&dir.join("health.lua"), &yaml(&dir.join(&t.input_path)));
            assert_eq!(got, t.health_status, "{kind} {}", t.input_path);
            ran += 1;
        }
    }
    println!("ran {ran} health cases");
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionTests {
    discovery_tests: Vec<DiscoveryTest>,
    action_tests: Vec<ActionTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoveryTest {
    input_path: String,
    result: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionTest {
    action: String,
    input_path: String,
    expected_output_path: String,
}

#[test]
fn canary_actions_are_offered_when_they_can_act_and_set_their_annotation() {
    let dir = root().join("Canary");
    let tests: ActionTests = serde_json::from_value(yaml(&dir.join("actions/action_test.yaml"))).unwrap();
    for t in &tests.discovery_tests {
        let got = run_lua(&dir.join("actions/discovery.lua"), &yaml(&dir.join(&t.input_path)));
        for want in &t.result {
            let name = want["name"].as_str().unwrap();
            assert_eq!(
                got[name]["disabled"], want["disabled"],
                "{}: action {name} offered wrongly; discovery said {got}",
                t.input_path
            );
        }
    }
    for t in &tests.action_tests {
        let got = run_lua(
            &dir.join(format!("actions/{}/action.lua", t.action)),
            &yaml(&dir.join(&t.input_path)),
        );
        let want = yaml(&dir.join(&t.expected_output_path));
        assert_eq!(
            normalize(got),
            normalize(want),
            "action {} on {}",
            t.action,
            t.input_path
        );
    }
}

#[test]
fn the_lua_literal_round_trips_awkward_text() {
    let input = serde_json::json!({"metadata": {"name": "a\"b\\c\n\u{1b}[31m"}, "list": [1, 2.5, true]});
    let script = std::env::temp_dir().join(format!("kaizen-identity-{}.lua", std::process::id()));
    std::fs::write(&script, "return obj").unwrap();
    let got = run_lua(&script, &input);
    let _ = std::fs::remove_file(&script);
    assert_eq!(got, input);
}

#[test]
fn the_argocd_cm_patch_carries_every_script_verbatim() {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/argocd-cm.sh"))
        .output()
        .expect("hack/argocd-cm.sh runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let patch: Value = serde_yaml::from_slice(&out.stdout).expect("the patch is YAML");
    for kind in ["Incident", "ActionItem", "Canary"] {
        let key = format!("resource.customizations.health.kaizen.dev_{kind}");
        let file = std::fs::read_to_string(root().join(kind).join("health.lua")).unwrap();
        assert_eq!(patch["data"][&key].as_str(), Some(file.as_str()), "{key}");
    }
    let actions: Value = serde_yaml::from_str(
        patch["data"]["resource.customizations.actions.kaizen.dev_Canary"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = actions["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["promote", "abort", "retry", "resume"]);
    let promote = std::fs::read_to_string(root().join("Canary/actions/promote/action.lua")).unwrap();
    assert_eq!(actions["definitions"][0]["action.lua"].as_str(), Some(promote.as_str()));
}
