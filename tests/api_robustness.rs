//! What an attacker's probe found, refused cleanly: JSON patches that multiply an
//! object, `null` list items that typed clients cannot decode, patches that replace
//! the root or pin a stale resourceVersion, rebinding a pod, `-A` name selectors, and
//! idle connections that would take every file descriptor.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, Server, KUBECTL};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn a_self_copying_json_patch_is_refused_and_memory_stays_low() {
    let server = Server::start();
    let big = server.dir.path().join("k");
    std::fs::write(&big, "x".repeat(200 * 1024)).unwrap();
    server.ok(&[
        "create",
        "configmap",
        "bomb",
        &format!("--from-file=k={}", big.display()),
    ]);
    let mut ops =
        vec![serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": {}})];
    for i in 0..20 {
        ops.push(serde_json::json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}));
        ops.push(serde_json::json!({"op": "copy", "from": "/metadata", "path": format!("/metadata/annotations/m{i}")}));
    }
    let patch = serde_json::Value::Array(ops).to_string();
    assert!(patch.len() < 4096, "a small patch: {} bytes", patch.len());
    let err = server.fails(&["patch", "configmap", "bomb", "--type", "json", "-p", &patch]);
    assert!(
        err.contains("accumulated size increase of copy exceeds the limit"),
        "{err}"
    );
    let rss = rss_kib(server.pid());
    assert!(rss < 100 * 1024, "server RSS {rss} KiB after the patch");
    // The object is unchanged and the server still serves.
    let cm = server.get_json(&["configmap", "bomb"]);
    assert_eq!(cm["data"].as_object().unwrap().len(), 1);
}

fn pod_manifest(name: &str, container_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{container_extra}"
    )
}

fn deployment_manifest(name: &str, container_extra: &str) -> String {
    let container_extra = container_extra.replace("    ", "        ");
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 0\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n{container_extra}"
    )
}

fn assert_invalid(err: &str, field: &str) {
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains(field), "expected {field} in: {err}");
}

#[test]
fn null_list_items_are_refused_on_every_write() {
    let server = Server::start();
    let nulls = [
        ("command", "    command: [null]\n"),
        ("ports", "    ports: [null]\n"),
        ("env", "    env: [null]\n"),
    ];
    for (field, extra) in nulls {
        let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &pod_manifest("p", extra));
        assert!(!ok, "create with {field}: [null] was accepted");
        assert_invalid(&err, &format!("spec.containers[0].{field}[0]"));
        let (ok, _, err) = server.with_stdin(
            &["apply", "--server-side", "-f", "-"],
            &deployment_manifest("applied", extra),
        );
        assert!(!ok, "apply with {field}: [null] was accepted");
        assert_invalid(
            &err,
            &format!("spec.template.spec.containers[0].{field}[0]"),
        );
    }
    assert!(!server.kubectl(&["get", "pod", "p"]).0);
    assert!(!server.kubectl(&["get", "deployment", "applied"]).0);

    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &deployment_manifest("d", ""));
    assert!(ok, "{err}");
    let (ok, _, err) = server.with_stdin(
        &["replace", "-f", "-"],
        &deployment_manifest("d", "    command: [null]\n"),
    );
    assert!(!ok, "replace with command: [null] was accepted");
    assert_invalid(&err, "spec.template.spec.containers[0].command[0]");

    let container = "/spec/template/spec/containers/0";
    let patches = [
        (
            "merge",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"busybox","command":[null]}]}}}}"#.to_string(),
            "command[0]",
        ),
        (
            "strategic",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","env":[null]}]}}}}"#.to_string(),
            "env[0]",
        ),
        (
            "json",
            format!(r#"[{{"op":"add","path":"{container}/ports","value":[null]}}]"#),
            "ports[0]",
        ),
    ];
    for (kind, patch, field) in patches {
        let err = server.fails(&["patch", "deployment", "d", "--type", kind, "-p", &patch]);
        assert_invalid(&err, &format!("spec.template.spec.containers[0].{field}"));
    }
    let stored = server.ok(&["get", "deployment", "d", "-o", "json"]);
    assert!(!stored.contains("null]"), "{stored}");
}

#[test]
fn json_patches_that_replace_the_root_or_pin_a_stale_version_are_refused() {
    let server = Server::start();
    server.ok(&["create", "configmap", "cm", "--from-literal=a=1"]);
    for value in ["[]", "1", "\"x\"", "null"] {
        let patch = format!(r#"[{{"op":"replace","path":"","value":{value}}}]"#);
        let err = server.fails(&["patch", "configmap", "cm", "--type", "json", "-p", &patch]);
        assert!(
            err.contains("UnprocessableEntity")
                || err.contains("Invalid")
                || err.contains("not an object"),
            "{value}: {err}"
        );
    }
    let stale = r#"[{"op":"replace","path":"/metadata/resourceVersion","value":"1"},{"op":"replace","path":"/data/a","value":"2"}]"#;
    let err = server.fails(&["patch", "configmap", "cm", "--type", "json", "-p", stale]);
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("the object has been modified"),
        "{err}"
    );
    let merge_stale = r#"{"metadata":{"resourceVersion":"1"},"data":{"a":"3"}}"#;
    let err = server.fails(&[
        "patch",
        "configmap",
        "cm",
        "--type",
        "merge",
        "-p",
        merge_stale,
    ]);
    assert!(err.contains("Conflict"), "{err}");
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  resourceVersion: \"1\"\ndata:\n  a: \"5\"\n";
    let (ok, _, err) = server.with_stdin(&["apply", "--server-side", "-f", "-"], applied);
    assert!(
        !ok && err.contains("the object has been modified"),
        "apply with a stale resourceVersion: {err}"
    );
    let cm = server.get_json(&["configmap", "cm"]);
    assert_eq!(cm["data"]["a"], "1");
    // The current version is accepted.
    let rv = cm["metadata"]["resourceVersion"].as_str().unwrap();
    let current = format!(
        r#"[{{"op":"replace","path":"/metadata/resourceVersion","value":"{rv}"}},{{"op":"replace","path":"/data/a","value":"4"}}]"#
    );
    server.ok(&["patch", "configmap", "cm", "--type", "json", "-p", &current]);
    assert_eq!(server.get_json(&["configmap", "cm"])["data"]["a"], "4");
}

#[test]
fn a_bound_pod_keeps_its_node_and_unbound_pods_still_bind() {
    let server = Server::start();
    let bound = pod_manifest("bound", "") + "  nodeName: n1\n";
    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &bound);
    assert!(ok, "{err}");
    for kind in ["merge", "strategic"] {
        let err = server.fails(&[
            "patch",
            "pod",
            "bound",
            "--type",
            kind,
            "-p",
            r#"{"spec":{"nodeName":"n2"}}"#,
        ]);
        assert!(
            err.contains("is invalid") && err.contains("pod updates may not change fields"),
            "{kind}: {err}"
        );
    }
    let err = server.fails(&[
        "patch",
        "pod",
        "bound",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/nodeName","value":"n2"}]"#,
    ]);
    assert!(err.contains("pod updates may not change fields"), "{err}");
    assert_eq!(server.get_json(&["pod", "bound"])["spec"]["nodeName"], "n1");

    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &pod_manifest("free", ""));
    assert!(ok, "{err}");
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"free"},"target":{"kind":"Node","name":"n3"}}"#;
    let (ok, _, err) = server.with_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/free/binding",
            "-f",
            "-",
        ],
        binding,
    );
    assert!(ok, "{err}");
    assert_eq!(server.get_json(&["pod", "free"])["spec"]["nodeName"], "n3");
}

#[test]
fn a_name_field_selector_across_namespaces_finds_the_object() {
    let server = Server::start();
    server.ok(&["create", "namespace", "other"]);
    server.ok(&["create", "configmap", "foo", "-n", "other"]);
    server.ok(&["create", "configmap", "foobar", "-n", "other"]);
    // A namespace named like the object must not confuse the lookup.
    server.ok(&["create", "namespace", "foo"]);
    server.ok(&["create", "configmap", "bar", "-n", "foo"]);
    let out = server.ok(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.name=foo",
        "-o",
        "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
    ]);
    assert_eq!(out.trim(), "other/foo");
    let out = server.ok(&[
        "get",
        "cm",
        "-n",
        "other",
        "--field-selector",
        "metadata.name=foo",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "configmap/foo");
}

/// A server this file starts itself: with `ulimit -n 1024` (soft and hard, so it
/// cannot raise it), or with its data and kubeconfig under `state` (a small disk).
struct OwnServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    state: std::path::PathBuf,
    low_fd: bool,
}

impl OwnServer {
    fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        Self::launch(dir, port, state, true)
    }

    fn start_on(state: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::launch(dir, port, state.to_path_buf(), false)
    }

    fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let (port, state, low_fd) = (self.port, self.state.clone(), self.low_fd);
        drop(self);
        Self::launch(dir, port, state, low_fd)
    }

    fn launch(dir: tempfile::TempDir, port: u16, state: std::path::PathBuf, low_fd: bool) -> Self {
        use std::os::unix::process::CommandExt;
        std::fs::write(dir.path().join("none.yaml"), "").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .args(["server", "--bind-address", "127.0.0.1", "--disable-agent"])
            .arg("--https-listen-port")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(state.join("data"))
            .arg("--write-kubeconfig")
            .arg(state.join("kubeconfig.yaml"))
            .arg("--config")
            .arg(dir.path().join("none.yaml"))
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
        unsafe {
            command.pre_exec(move || {
                if !low_fd {
                    return Ok(());
                }
                let limit = nix::libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 1024,
                };
                if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let server = OwnServer {
            child: command.spawn().expect("start skiff server"),
            dir,
            port,
            state,
            low_fd,
        };
        assert!(
            eventually(Duration::from_secs(30), || server
                .kubectl(&["get", "--raw", "/readyz"])
                .status
                .success()),
            "not ready: {}",
            std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
        );
        server
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(KUBECTL)
            .args(args)
            .arg("--request-timeout=20s")
            .env("KUBECONFIG", self.state.join("kubeconfig.yaml"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets this test process hold a few thousand sockets.
fn raise_own_fd_limit(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < needed {
        assert!(
            hard >= needed,
            "the hard open-file limit {hard} is below {needed}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
}

#[test]
fn idle_connections_do_not_lock_clients_out() {
    raise_own_fd_limit(4096);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = OwnServer::start(port);
    let mut idle = Vec::new();
    for i in 0..2000 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                // Half send the first bytes of a TLS record and stall.
                if i % 2 == 0 {
                    let _ = s.write_all(&[0x16, 0x03, 0x01]);
                }
                idle.push(s);
            }
            Err(e) => panic!("connection {i} failed: {e}"),
        }
    }
    let out = server.kubectl(&["get", "ns"]);
    assert!(
        out.status.success(),
        "kubectl was locked out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("default"));
    // And again, with the idle connections still held open.
    let out = server.kubectl(&["get", "configmaps", "-A"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A connection that stalls in its TLS handshake is closed by the server (10 s).
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = std::io::Read::read(&mut stalled, &mut buf);
    let closed = match &read {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "a stalled handshake was not closed: {read:?}");
    drop(idle);
}

/// A size-limited tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs");
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills what space is left with a file (until ENOSPC).
    fn fill(&self, name: &str) {
        let mut file = std::fs::File::create(self.path().join(name)).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
#[ignore = "needs root"]
fn deletes_work_and_the_server_restarts_on_a_full_disk() {
    let disk = SmallDisk::mount("64m");
    let server = OwnServer::start_on(disk.path());
    let value = std::env::temp_dir().join(format!("skiff-value-{}", std::process::id()));
    std::fs::write(&value, "v".repeat(512 * 1024)).unwrap();
    let ok = |out: &std::process::Output| out.status.success();
    let mut stored = Vec::new();
    // Fill the disk with objects until writes fail, then the rest with a file.
    for i in 0..400 {
        let name = format!("fill-{i}");
        let out = server.kubectl(&[
            "create",
            "configmap",
            &name,
            &format!("--from-file=v={}", value.display()),
        ]);
        if !ok(&out) {
            break;
        }
        stored.push(name);
    }
    disk.fill("filler");
    let out = server.kubectl(&[
        "create",
        "configmap",
        "one-more",
        &format!("--from-file=v={}", value.display()),
    ]);
    assert!(!ok(&out), "a 512 KiB write succeeded on a full disk");
    assert!(stored.len() > 2, "some objects were stored first");
    let out = server.kubectl(&["delete", "configmap", &stored[0]]);
    assert!(
        ok(&out),
        "delete on a full disk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.kubectl(&["delete", "configmap", &stored[1]]);
    assert!(
        ok(&out),
        "second delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Full again (whatever the delete released), then a restart.
    disk.fill("filler-2");
    let server = server.restart();
    let out = server.kubectl(&["get", "configmap", &stored[2], "-o", "name"]);
    assert!(
        ok(&out),
        "after a restart on a full disk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&value);
    drop(server);
}

#[test]
fn an_old_stored_null_list_item_does_not_stop_the_controllers() {
    let mut server = Server::start();
    let (ok, _, err) = server.with_stdin(
        &["create", "-f", "-"],
        &pod_manifest("old", "    command: [sh]\n"),
    );
    assert!(ok, "{err}");
    // What an older skiff let through, written straight into the stopped store.
    server.kill9();
    {
        let db = rusqlite::Connection::open(server.db_path()).unwrap();
        for table in ["current", "log"] {
            let changed = db
                .execute(
                    &format!(
                        "UPDATE {table} SET value = CAST(replace(CAST(value AS TEXT), '\"command\":[\"sh\"]', '\"command\":[null]') AS BLOB) WHERE key LIKE '%/default/old'"
                    ),
                    [],
                )
                .unwrap();
            assert!(changed > 0, "planted in {table}");
        }
    }
    server.restart();
    assert!(
        server.log().contains("dropping null list items"),
        "{}",
        server.log()
    );
    let pod = server.get_json(&["pod", "old"]);
    assert_eq!(
        pod["spec"]["containers"][0]["command"],
        serde_json::json!([])
    );
    let (ok, _, err) = server.with_stdin(
        &["create", "-f", "-"],
        &deployment_manifest("web", "").replace("replicas: 0", "replicas: 2"),
    );
    assert!(ok, "{err}");
    assert!(
        eventually(Duration::from_secs(30), || {
            server.get_json(&["pods", "-l", "app=web"])["items"]
                .as_array()
                .is_some_and(|items| items.len() == 2)
        }),
        "the controllers did not create the deployment's pods: {}",
        server.log()
    );
}
