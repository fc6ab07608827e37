//! The plugin side of the CNI protocol (spec 1.0): the `CNI_*` environment, the
//! config on stdin, the result or error JSON on stdout, VERSION, result conversion to
//! the requested `cniVersion`, and delegation to another plugin (IPAM) on `CNI_PATH`.
//!
//! Owns: reading a call and printing its answer. Calls: nothing in skiff.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};

use serde_json::{json, Value};

/// The versions the built-in plugins speak (results of 0.1/0.2 had another shape).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// Error codes of the CNI specification (and libcni's 999 for anything else).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const INTERNAL: u32 = 999;
}

/// A CNI error as a plugin reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{msg} {details}")]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl PluginError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        PluginError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, msg)
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    /// The error JSON of the specification.
    pub fn to_json(&self, version: &str) -> Value {
        json!({"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details})
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

impl Command {
    fn parse(text: &str) -> Option<Command> {
        match text {
            "ADD" => Some(Command::Add),
            "DEL" => Some(Command::Del),
            "CHECK" => Some(Command::Check),
            "VERSION" => Some(Command::Version),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
        }
    }
}

/// One invocation: the environment and the parsed network config.
#[derive(Debug, Clone)]
pub struct Call {
    pub command: Command,
    pub container_id: String,
    /// `None` on a DEL without a namespace (it is gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
    /// The config exactly as it came on stdin, for delegation.
    pub stdin: Vec<u8>,
    pub config: Value,
    pub version: String,
}

impl Call {
    pub fn name(&self) -> &str {
        self.config["name"].as_str().unwrap_or_default()
    }

    pub fn netns(&self) -> Result<&Path, PluginError> {
        self.netns
            .as_deref()
            .ok_or_else(|| PluginError::new(code::INVALID_ENVIRONMENT, "CNI_NETNS is required"))
    }

    /// `prevResult`, if the runtime passed one.
    pub fn prev_result(&self) -> Option<&Value> {
        self.config.get("prevResult").filter(|v| v.is_object())
    }
}

/// What a plugin does for each command.
pub trait Plugin {
    /// Returns the result (in 1.0.0 shape; converted to the caller's version here).
    fn add(&self, call: &Call) -> Result<Value, PluginError>;
    fn check(&self, call: &Call) -> Result<(), PluginError>;
    fn del(&self, call: &Call) -> Result<(), PluginError>;
}

/// Runs `plugin` on this process's environment and stdin, prints the answer and
/// returns the exit code.
pub fn run(plugin: &dyn Plugin) -> ExitCode {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let (answer, ok) = match answer(plugin, &env, stdin) {
        Ok(value) => (value, true),
        Err((error, version)) => (Some(error.to_json(&version)), false),
    };
    let mut out = std::io::stdout().lock();
    if let Some(answer) = answer {
        let _ = writeln!(out, "{answer}");
    }
    let _ = out.flush();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The answer to one call, or the error with the version to report it in.
pub fn answer(
    plugin: &dyn Plugin,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: Vec<u8>,
) -> Result<Option<Value>, (PluginError, String)> {
    let fallback = || "1.0.0".to_string();
    let command = env("CNI_COMMAND")
        .ok_or_else(|| PluginError::new(code::INVALID_ENVIRONMENT, "CNI_COMMAND is required"))
        .and_then(|c| {
            Command::parse(&c).ok_or_else(|| {
                PluginError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("unknown CNI_COMMAND {c:?}"),
                )
            })
        })
        .map_err(|e| (e, fallback()))?;
    // VERSION answers whatever came on stdin (the spec sends `{"cniVersion"}`).
    if command == Command::Version {
        return Ok(Some(
            json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS}),
        ));
    }
    let config: Value = serde_json::from_slice(&stdin)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            (
                PluginError::new(
                    code::DECODING_FAILURE,
                    "decoding the network config from stdin",
                ),
                fallback(),
            )
        })?;
    let version = config["cniVersion"].as_str().unwrap_or("0.1.0").to_string();
    let fail = |e: PluginError| (e, version.clone());
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(fail(PluginError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI versions; config is {version:?}, plugin supports {SUPPORTED_VERSIONS:?}"
            ),
        )));
    }
    if command == Command::Check && version.starts_with("0.3.") {
        return Err(fail(PluginError::new(
            code::INCOMPATIBLE_VERSION,
            format!("config version {version} does not allow CHECK"),
        )));
    }
    let required = |key: &str| {
        env(key).ok_or_else(|| {
            fail(PluginError::new(
                code::INVALID_ENVIRONMENT,
                format!("{key} is required"),
            ))
        })
    };
    let container_id = required("CNI_CONTAINERID")?;
    if !valid_container_id(&container_id) {
        return Err(fail(PluginError::new(
            code::INVALID_ENVIRONMENT,
            format!(
                "invalid CNI_CONTAINERID {container_id:?}: letters, digits, '_', '.' and '-' only"
            ),
        )));
    }
    let ifname = required("CNI_IFNAME")?;
    if !valid_ifname(&ifname) {
        return Err(fail(PluginError::new(
            code::INVALID_ENVIRONMENT,
            format!("invalid CNI_IFNAME {ifname:?}: a Linux link name of at most 15 bytes"),
        )));
    }
    let netns = match command {
        Command::Del => env("CNI_NETNS").map(PathBuf::from),
        _ => Some(PathBuf::from(required("CNI_NETNS")?)),
    };
    let call = Call {
        command,
        container_id,
        netns,
        ifname,
        args: parse_args(&env("CNI_ARGS").unwrap_or_default()),
        path: std::env::split_paths(&env("CNI_PATH").unwrap_or_default()).collect(),
        stdin,
        config,
        version: version.clone(),
    };
    match command {
        Command::Add => plugin.add(&call).map(|r| Some(convert(r, &version))),
        Command::Check => plugin.check(&call).map(|()| None),
        Command::Del => plugin.del(&call).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
    .map_err(fail)
}

/// Container ids as libcni accepts them: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
fn valid_container_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Link names the kernel takes: 1 to 15 bytes, no '/', ':' or whitespace, not `.`/`..`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `K=V;K=V` pairs of `CNI_ARGS`.
pub fn parse_args(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A result (1.0.0 shape, or any 0.3+/1.0 shape) in the shape of `version`:
/// 0.3.x and 0.4.0 give each IP a `version`, 1.0.0 has none.
pub fn convert(mut result: Value, version: &str) -> Value {
    let old = version.starts_with("0.");
    if let Some(ips) = result.get_mut("ips").and_then(Value::as_array_mut) {
        for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
            if old {
                let v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains(':'));
                ip.insert("version".into(), json!(if v6 { "6" } else { "4" }));
            } else {
                ip.remove("version");
            }
        }
    }
    result["cniVersion"] = json!(version);
    result
}

/// Runs plugin `kind` from `CNI_PATH` for `command` with the caller's config, as
/// bridge runs its IPAM plugin; its error comes back unchanged.
pub fn delegate(call: &Call, kind: &str, command: Command) -> Result<Option<Value>, PluginError> {
    if kind.is_empty() || kind.contains('/') {
        return Err(PluginError::config(format!("invalid plugin type {kind:?}")));
    }
    let binary = call
        .path
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            PluginError::internal(format!("failed to find plugin {kind:?} in CNI_PATH"))
        })?;
    let mut child = Process::new(&binary)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PluginError::internal(format!("running {}: {e}", binary.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&call.stdin);
    }
    let output = child
        .wait_with_output()
        .map_err(|e| PluginError::internal(format!("running {}: {e}", binary.display())))?;
    let answer: Option<Value> = serde_json::from_slice(&output.stdout).ok();
    if output.status.success() {
        return Ok(answer.filter(Value::is_object));
    }
    Err(match answer {
        Some(e) if e["code"].is_u64() => PluginError {
            code: e["code"].as_u64().unwrap_or(999) as u32,
            msg: e["msg"].as_str().unwrap_or_default().to_string(),
            details: e["details"].as_str().unwrap_or_default().to_string(),
        },
        _ => PluginError::internal(format!(
            "{kind} {}: {}",
            command.as_str(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call with `config` and a test container's environment.
    pub(crate) fn call(config: Value) -> Call {
        Call {
            command: Command::Add,
            container_id: "c1".into(),
            netns: None,
            ifname: "eth0".into(),
            args: vec![],
            path: vec![],
            stdin: config.to_string().into_bytes(),
            version: config["cniVersion"].as_str().unwrap_or("1.0.0").into(),
            config,
        }
    }

    /// Answers every command with a fixed result, to exercise the protocol.
    struct Echo;

    impl Plugin for Echo {
        fn add(&self, call: &Call) -> Result<Value, PluginError> {
            Ok(
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}, {"address": "fd00::2/64"}], "args": call.args.len()}),
            )
        }
        fn check(&self, _: &Call) -> Result<(), PluginError> {
            Ok(())
        }
        fn del(&self, _: &Call) -> Result<(), PluginError> {
            Err(PluginError::new(code::UNKNOWN_CONTAINER, "gone"))
        }
    }

    fn ask(vars: &[(&str, &str)], stdin: &str) -> Result<Option<Value>, (PluginError, String)> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |key: &str| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        answer(&Echo, &env, stdin.as_bytes().to_vec())
    }

    const ENV: [(&str, &str); 4] = [
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
    ];

    fn with(command: &str) -> Vec<(&str, &str)> {
        let mut vars = ENV.to_vec();
        vars.push(("CNI_COMMAND", command));
        vars
    }

    #[test]
    fn version_lists_the_supported_versions() {
        assert!(ask(&[("CNI_COMMAND", "VERSION")], "").unwrap().is_some());
        let got = ask(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            got["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
        );
    }

    #[test]
    fn results_are_converted_to_the_requested_version() {
        let new = ask(&with("ADD"), r#"{"cniVersion":"1.0.0","name":"n"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(new["cniVersion"], "1.0.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["args"], 2);
        let old = ask(&with("ADD"), r#"{"cniVersion":"0.3.1","name":"n"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(old["cniVersion"], "0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert_eq!(convert(old, "1.0.0")["ips"][0].get("version"), None);
        assert_eq!(
            ask(&with("CHECK"), r#"{"cniVersion":"0.4.0"}"#).unwrap(),
            None
        );
    }

    #[test]
    fn errors_carry_the_spec_codes() {
        let code_of = |vars: &[(&str, &str)], stdin: &str| ask(vars, stdin).unwrap_err().0.code;
        assert_eq!(
            code_of(&ENV, r#"{"cniVersion":"1.0.0"}"#),
            code::INVALID_ENVIRONMENT
        );
        assert_eq!(
            code_of(&with("FROB"), r#"{"cniVersion":"1.0.0"}"#),
            code::INVALID_ENVIRONMENT
        );
        assert_eq!(code_of(&with("ADD"), "not json"), code::DECODING_FAILURE);
        assert_eq!(
            code_of(&with("ADD"), r#"{"cniVersion":"9.9.9"}"#),
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code_of(&with("ADD"), r#"{"name":"n"}"#),
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code_of(&with("CHECK"), r#"{"cniVersion":"0.3.1"}"#),
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code_of(&[("CNI_COMMAND", "ADD")], r#"{"cniVersion":"1.0.0"}"#),
            code::INVALID_ENVIRONMENT
        );
        let (err, version) = ask(&with("DEL"), r#"{"cniVersion":"0.4.0"}"#).unwrap_err();
        assert_eq!(
            err.to_json(&version),
            json!({"cniVersion": "0.4.0", "code": 3, "msg": "gone", "details": ""})
        );
        for (key, bad) in [
            ("CNI_CONTAINERID", "../x"),
            ("CNI_IFNAME", "much-too-long-name"),
            ("CNI_IFNAME", "a/b"),
        ] {
            let mut vars: Vec<_> = with("ADD").into_iter().filter(|(k, _)| *k != key).collect();
            vars.push((key, bad));
            assert_eq!(
                code_of(&vars, r#"{"cniVersion":"1.0.0"}"#),
                code::INVALID_ENVIRONMENT,
                "{key}={bad}"
            );
        }
        // DEL needs no namespace.
        let no_netns: Vec<_> = with("DEL")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        assert_eq!(
            code_of(&no_netns, r#"{"cniVersion":"1.0.0"}"#),
            code::UNKNOWN_CONTAINER
        );
    }

    #[test]
    fn cni_args_are_pairs() {
        assert_eq!(
            parse_args("IgnoreUnknown=1;K8S_POD_NAME=p;bad"),
            vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "p".into())
            ]
        );
    }
}
