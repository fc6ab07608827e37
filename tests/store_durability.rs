//! Durability: SIGKILL the server in the middle of a stream of creates; after a
//! restart every acknowledged create is there, revisions keep increasing and the
//! database passes SQLite's integrity check.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;

#[test]
fn acknowledged_creates_survive_kill_9() {
    let mut server = Server::start();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (acked, stop) = (acknowledged.clone(), stop.clone());
            let mut cmd_base = server.kubectl_cmd(&[]);
            let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = cmd_base
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
                .collect();
            let _ = &mut cmd_base;
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("w{w}-{i}");
                    let status = std::process::Command::new(common::KUBECTL)
                        .args([
                            "create",
                            "configmap",
                            &name,
                            "--from-literal=k=v",
                            "--request-timeout=2s",
                        ])
                        .envs(envs.iter().map(|(k, v)| (k, v)))
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .unwrap();
                    if status.success() {
                        acked.lock().unwrap().push(name);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    server.kill9();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "too few creates to mean anything: {}",
        acked.len()
    );

    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    server.restart();
    let list = server.get_json(&["configmaps"]);
    let items = list["items"].as_array().unwrap();
    let stored: std::collections::HashSet<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|n| !stored.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let newest = items
        .iter()
        .map(|i| {
            i["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .max()
        .unwrap();
    server.ok(&["create", "configmap", "after-restart"]);
    let after = server.get_json(&["configmap", "after-restart"]);
    let rv: i64 = after["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > newest, "revision went back: {rv} <= {newest}");
}
