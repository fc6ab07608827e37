//! Jobs and CronJobs end to end: the server is its own node (real agent, real busybox
//! containers) and the real kubectl drives it. A Job completes and `kubectl logs
//! job/…` prints what it echoed; a failing Job with `backoffLimit: 1` ends `Failed`
//! after exactly two pods; a CronJob every minute starts a Job within 70 s whose pod
//! completes; `kubectl create job --from=cronjob/…` starts one by hand; Indexed Jobs,
//! `activeDeadlineSeconds` and `ttlSecondsAfterFinished` work; the Table columns are
//! upstream's. On simulated nodes (no root): completions with parallelism, suspend and
//! resume, and garbage collection of a deleted Job's pods.
//!
//! The real-container test needs root, busybox-static and the CNI plugins. Its node has its own pod and
//! service ranges, kubelet port and bridge, and no overlay, so it may run beside other
//! test nodes; the suite runs it under the e2e lock:
//! `flock /tmp/skiff-e2e.lock cargo test --test workloads_jobs -- --include-ignored`.

mod common;

use std::time::{Duration, Instant};

use common::images;
use common::{eventually, Server};

const IMAGE: &str = "busybox:jobs";

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `body` against a server that is a node too, then removes pods, stops the
/// server by PID and cleans the node.
fn with_node(body: impl FnOnce(&Server)) {
    let build = tempfile::tempdir().unwrap();
    let archive = images::busybox_image(build.path(), IMAGE, images::ImageConfigSpec::cmd(&["sh"]));
    // Its own pod and service ranges, kubelet port and no overlay, so it shares the
    // machine with other test nodes.
    let kubelet_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port().to_string())
        .unwrap();
    let server = common::start_server_node(
        &archive,
        &[
            "--cluster-cidr",
            "10.77.0.0/16",
            "--service-cidr",
            "10.78.0.0/16",
            "--cluster-dns",
            "10.78.0.10",
            "--kubelet-port",
            &kubelet_port,
            "--flannel-backend",
            "none",
        ],
    );
    common::run_then_clean_node(server, |server| {
        let ready = eventually(Duration::from_secs(30), || {
            server
                .kubectl(&["get", "nodes", "--no-headers"])
                .1
                .contains(" Ready ")
        });
        assert!(ready, "no ready node:\n{}", tail(&server.log(), 30));
        let _ = server.kubectl(&["delete", "jobs,cronjobs", "--all", "--timeout=30s"]);
        body(server)
    });
}

fn apply(server: &Server, manifest: &str) {
    let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], manifest);
    assert!(ok, "apply failed: {out}{err}");
}

fn job_manifest(name: &str, command: &str, restart: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}  template:
    spec:
      restartPolicy: {restart}
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        command: ["sh", "-c", "{command}"]
"#
    )
}

fn pods_of_job(server: &Server, job: &str) -> Vec<serde_json::Value> {
    let list = server.get_json(&["pods", "-l", &format!("job-name={job}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
#[ignore = "needs root"]
fn jobs_complete_fail_and_cronjobs_start_jobs() {
    with_node(|server| {
        // The CronJob goes first: its minute ticks while the Jobs run.
        apply(
            server,
            &format!(
                r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    metadata:
      labels:
        from: tick
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {IMAGE}
            command: ["sh", "-c", "echo tick"]
"#
            ),
        );
        let cronjob_created = Instant::now();
        let cj = server.get_json(&["cronjob", "tick"]);
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cj["spec"]["suspend"], false);
        let header = server.ok(&["get", "cronjobs"]);
        let first = header.lines().next().unwrap_or_default();
        let columns: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(
            columns,
            ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"],
            "{header}"
        );
        assert!(server
            .ok(&["get", "cj", "tick", "--no-headers"])
            .contains("*/1 * * * *"));
        let bad = server.with_stdin(
            &["apply", "-f", "-"],
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: bad\nspec:\n  schedule: \"61 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: c\n            image: x\n",
        );
        assert!(!bad.0, "a bad schedule was accepted");
        assert!(bad.2.contains("spec.schedule"), "{}", bad.2);

        // A Job that completes; its logs through the Job.
        apply(
            server,
            &job_manifest("hello", "echo hello-from-job", "Never", ""),
        );
        let job = server.get_json(&["job", "hello"]);
        let uid = job["metadata"]["uid"].as_str().unwrap().to_string();
        assert_eq!(job["spec"]["completions"], 1);
        assert_eq!(job["spec"]["parallelism"], 1);
        assert_eq!(job["spec"]["backoffLimit"], 6);
        assert_eq!(job["spec"]["completionMode"], "NonIndexed");
        assert_eq!(
            job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            uid.as_str()
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "hello"
        );
        let (ok, out, err) = server.kubectl(&[
            "wait",
            "--for=condition=Complete",
            "job/hello",
            "--timeout=90s",
        ]);
        assert!(
            ok,
            "job did not complete: {out}{err}\n{}",
            tail(&server.log(), 40)
        );
        let logs = server.ok(&["logs", "job/hello"]);
        assert_eq!(logs.trim(), "hello-from-job");
        let job = server.get_json(&["job", "hello"]);
        assert_eq!(job["status"]["succeeded"], 1);
        assert!(job["status"]["completionTime"].is_string(), "{job}");
        let pods = pods_of_job(server, "hello");
        assert_eq!(pods.len(), 1);
        let pod_name = pods[0]["metadata"]["name"].as_str().unwrap();
        assert!(pod_name.starts_with("hello-") && pod_name.len() == "hello-".len() + 5);
        let table = server.ok(&["get", "jobs", "hello"]);
        let mut lines = table.lines();
        let columns: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            columns,
            ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
            "{table}"
        );
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(&row[..3], ["hello", "Complete", "1/1"], "{table}");

        // A failing Job: one retry after a back-off, then Failed; never a third pod.
        apply(
            server,
            &job_manifest("fail", "exit 3", "Never", "  backoffLimit: 1\n"),
        );
        let (ok, out, err) = server.kubectl(&[
            "wait",
            "--for=condition=Failed",
            "job/fail",
            "--timeout=120s",
        ]);
        assert!(
            ok,
            "job did not fail: {out}{err}\n{}",
            tail(&server.log(), 40)
        );
        let job = server.get_json(&["job", "fail"]);
        let failed = job["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .cloned()
            .unwrap();
        assert_eq!(failed["reason"], "BackoffLimitExceeded", "{job}");
        assert_eq!(job["status"]["failed"], 2, "{job}");
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(pods_of_job(server, "fail").len(), 2);
        let row = server.ok(&["get", "job", "fail", "--no-headers"]);
        assert!(row.contains("Failed"), "{row}");

        // An Indexed Job: one pod per index, which it finds in its environment and
        // hostname.
        apply(
            server,
            &job_manifest(
                "idx",
                "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
                "Never",
                "  completions: 2\n  parallelism: 2\n  completionMode: Indexed\n",
            ),
        );
        let (ok, out, err) = server.kubectl(&[
            "wait",
            "--for=condition=Complete",
            "job/idx",
            "--timeout=90s",
        ]);
        assert!(ok, "indexed job did not complete: {out}{err}");
        let job = server.get_json(&["job", "idx"]);
        assert_eq!(job["status"]["completedIndexes"], "0-1", "{job}");
        let pods = pods_of_job(server, "idx");
        assert_eq!(pods.len(), 2);
        for pod in &pods {
            let index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap();
            let name = pod["metadata"]["name"].as_str().unwrap();
            assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
            let logs = server.ok(&["logs", name]);
            assert_eq!(logs.trim(), format!("index={index} host=idx-{index}"));
        }

        // activeDeadlineSeconds fails a Job that runs too long.
        apply(
            server,
            &job_manifest("slow", "sleep 60", "Never", "  activeDeadlineSeconds: 3\n"),
        );
        let (ok, out, err) = server.kubectl(&[
            "wait",
            "--for=condition=Failed",
            "job/slow",
            "--timeout=60s",
        ]);
        assert!(ok, "slow job did not fail: {out}{err}");
        let job = server.get_json(&["job", "slow"]);
        let reasons: Vec<&str> = job["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["reason"].as_str())
            .collect();
        assert!(reasons.contains(&"DeadlineExceeded"), "{job}");

        // ttlSecondsAfterFinished deletes a finished Job and its pods.
        apply(
            server,
            &job_manifest("brief", "true", "Never", "  ttlSecondsAfterFinished: 2\n"),
        );
        let expired = eventually(Duration::from_secs(60), || {
            !server.kubectl(&["get", "job", "brief"]).0 && pods_of_job(server, "brief").is_empty()
        });
        assert!(expired, "job with a TTL was not deleted");

        // A Job started by hand from the CronJob's template.
        server.ok(&["create", "job", "manual", "--from=cronjob/tick"]);
        let (ok, out, err) = server.kubectl(&[
            "wait",
            "--for=condition=Complete",
            "job/manual",
            "--timeout=90s",
        ]);
        assert!(ok, "manual job did not complete: {out}{err}");
        assert_eq!(server.ok(&["logs", "job/manual"]).trim(), "tick");

        // The CronJob's own Job, named after its scheduled minute, within 70 s.
        let mut scheduled = None;
        let found = eventually(
            Duration::from_secs(70).saturating_sub(cronjob_created.elapsed()),
            || {
                let jobs = server.get_json(&["jobs", "-l", "from=tick"]);
                scheduled = jobs["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|j| {
                        j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
                            && j["metadata"]["name"] != "manual"
                    })
                    .cloned();
                scheduled.is_some()
            },
        );
        assert!(
            found,
            "no job from the cronjob:\n{}",
            tail(&server.log(), 40)
        );
        let job = scheduled.unwrap();
        let name = job["metadata"]["name"].as_str().unwrap().to_string();
        let stamp = job["metadata"]["annotations"]
            ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .unwrap()
            .to_string();
        let at = chrono::DateTime::parse_from_rfc3339(&stamp).unwrap();
        assert_eq!(name, format!("tick-{}", at.timestamp() / 60));
        let (ok, out, err) = server.kubectl(&[
            "wait",
            "--for=condition=Complete",
            &format!("job/{name}"),
            "--timeout=90s",
        ]);
        assert!(ok, "scheduled job did not complete: {out}{err}");
        let cj = server.get_json(&["cronjob", "tick"]);
        assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
        let settled = eventually(Duration::from_secs(20), || {
            let cj = server.get_json(&["cronjob", "tick"]);
            cj["status"]["lastSuccessfulTime"].is_string()
        });
        assert!(settled, "no lastSuccessfulTime");

        // Deleting the CronJob takes its Jobs and their pods along.
        server.ok(&["delete", "cronjob", "tick"]);
        let gone = eventually(Duration::from_secs(60), || {
            server.get_json(&["jobs", "-l", "from=tick"])["items"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        });
        assert!(gone, "the cronjob's jobs were not collected");
    });
}

/// A simulated Job: its pods "exit" with the code the template's annotation asks for.
fn simulated_job(name: &str, exit_code: u8, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}  template:
    metadata:
      annotations:
        sim.skiff.dev/exit-code: "{exit_code}"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"#
    )
}

/// Completions and parallelism, suspend and resume, on simulated nodes (no root).
#[test]
fn parallel_and_suspended_jobs_on_simulated_nodes() {
    let (server, _agents) = common::cluster(2);
    apply(
        &server,
        &simulated_job("batch", 0, "  completions: 6\n  parallelism: 3\n"),
    );
    let mut most_active = 0;
    let done = eventually(Duration::from_secs(60), || {
        let job = server.get_json(&["job", "batch"]);
        let running = pods_of_job(&server, "batch")
            .iter()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .count();
        most_active = most_active.max(running);
        job["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        })
    });
    assert!(done, "job did not complete:\n{}", tail(&server.log(), 30));
    assert!(most_active <= 3, "{most_active} pods ran at once");
    let job = server.get_json(&["job", "batch"]);
    assert_eq!(job["status"]["succeeded"], 6, "{job}");
    assert_eq!(pods_of_job(&server, "batch").len(), 6);
    let row = server.ok(&["get", "job", "batch", "--no-headers"]);
    assert!(row.contains("Complete") && row.contains("6/6"), "{row}");

    // Suspended: no pods until resumed.
    apply(&server, &simulated_job("later", 0, "  suspend: true\n"));
    let suspended = eventually(Duration::from_secs(20), || {
        server
            .ok(&["get", "job", "later", "--no-headers"])
            .contains("Suspended")
    });
    assert!(suspended, "job not reported Suspended");
    std::thread::sleep(Duration::from_secs(2));
    assert!(pods_of_job(&server, "later").is_empty());
    server.ok(&[
        "patch",
        "job",
        "later",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    let (ok, out, err) = server.kubectl(&[
        "wait",
        "--for=condition=Complete",
        "job/later",
        "--timeout=60s",
    ]);
    assert!(ok, "resumed job did not complete: {out}{err}");

    // Deleting a Job takes its pods along.
    server.ok(&["delete", "job", "batch"]);
    let gone = eventually(Duration::from_secs(30), || {
        pods_of_job(&server, "batch").is_empty()
    });
    assert!(gone, "the job's pods were not collected");
}
