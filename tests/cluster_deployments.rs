//! Deployments on simulated nodes: the seed Deployment spreads over three nodes,
//! rolls out without dropping below its availability budget, keeps history, undoes,
//! restarts and scales — all driven by the real kubectl.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cluster, eventually, fixture, is_ready, is_terminating, pods};

const APP: &str = "app=my-flask-app";

fn rollout_ok(server: &common::Server) {
    server.ok(&[
        "rollout",
        "status",
        "deployment/my-flask-app",
        "--timeout=90s",
    ]);
}

fn images(server: &common::Server) -> HashSet<String> {
    pods(server, APP)
        .iter()
        .filter(|p| !is_terminating(p))
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn the_seed_deployment_runs_rolls_out_undoes_restarts_and_scales() {
    let (server, _agents) = cluster(3);
    server.ok(&["apply", "-f", fixture("deployment.yaml").to_str().unwrap()]);
    rollout_ok(&server);
    let running = pods(&server, APP);
    assert_eq!(running.len(), 3);
    assert!(running
        .iter()
        .all(|p| p["status"]["phase"] == "Running" && is_ready(p)));
    let nodes: HashSet<&str> = running
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3, "pods should spread over the three nodes");

    // Rolling update, sampled continuously: 25%/25% of 3 is surge 1, unavailable 0.
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(Mutex::new((usize::MAX, 0usize)));
    let sampler = {
        let (stop, worst) = (stop.clone(), worst.clone());
        let kubeconfig = server.kubeconfig();
        let home = server.dir.path().join("home");
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = std::process::Command::new(common::KUBECTL)
                    .args(["get", "pods", "-l", APP, "-o", "json"])
                    .env("KUBECONFIG", &kubeconfig)
                    .env("HOME", &home)
                    .output()
                    .unwrap();
                if let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    let items = list["items"].as_array().cloned().unwrap_or_default();
                    let live: Vec<_> = items.iter().filter(|p| !is_terminating(p)).collect();
                    let ready = live.iter().filter(|p| is_ready(p)).count();
                    let mut w = worst.lock().unwrap();
                    w.0 = w.0.min(ready);
                    w.1 = w.1.max(live.len());
                }
            }
        })
    };
    server.ok(&[
        "set",
        "image",
        "deployment/my-flask-app",
        "flask=my-flask-app:v2",
    ]);
    rollout_ok(&server);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let (min_ready, max_total) = *worst.lock().unwrap();
    assert!(
        min_ready >= 3,
        "ready pods dropped to {min_ready} during the rollout"
    );
    assert!(max_total <= 4, "{max_total} pods existed at once (limit 4)");
    assert_eq!(
        images(&server),
        HashSet::from(["my-flask-app:v2".to_string()])
    );

    let history = server.ok(&["rollout", "history", "deployment/my-flask-app"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions.len(), 2, "{history}");

    server.ok(&["rollout", "undo", "deployment/my-flask-app"]);
    rollout_ok(&server);
    assert!(eventually(Duration::from_secs(30), || images(&server)
        == HashSet::from(["my-flask-app:latest".to_string()])));

    let before: HashSet<String> = pods(&server, APP)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    server.ok(&["rollout", "restart", "deployment/my-flask-app"]);
    rollout_ok(&server);
    let replaced = eventually(Duration::from_secs(30), || {
        let now: Vec<_> = pods(&server, APP)
            .into_iter()
            .filter(|p| !is_terminating(p))
            .collect();
        now.len() == 3
            && now
                .iter()
                .all(|p| !before.contains(p["metadata"]["name"].as_str().unwrap()))
    });
    assert!(replaced, "restart did not replace every pod");

    server.ok(&["scale", "deployment/my-flask-app", "--replicas=5"]);
    rollout_ok(&server);
    assert!(eventually(Duration::from_secs(30), || pods(&server, APP)
        .iter()
        .filter(|p| is_ready(p) && !is_terminating(p))
        .count()
        == 5));
    server.ok(&["scale", "deployment/my-flask-app", "--replicas=1"]);
    rollout_ok(&server);
    assert!(eventually(Duration::from_secs(30), || pods(&server, APP)
        .len()
        == 1));
    server.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/my-flask-app",
        "--timeout=30s",
    ]);
}
