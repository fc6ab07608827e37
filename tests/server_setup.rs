//! `skiff server` start-up: certificates, kubeconfig, token, config file and flags.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::Server;

fn serving_sans(server: &Server) -> Vec<String> {
    let pem = std::fs::read(server.data_dir().join("server/tls/serving.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                _ => format!("{ip:?}"),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn first_start_writes_certificates_kubeconfig_and_token_and_restarts_reuse_them() {
    let mut server = Server::start_with(&["--tls-san", "edge.example", "--tls-san", "192.0.2.7"]);
    let mode = std::fs::metadata(server.kubeconfig())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let sans = serving_sans(&server);
    for expected in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "10.43.0.1",
        "edge.example",
        "192.0.2.7",
    ] {
        assert!(
            sans.iter().any(|s| s == expected),
            "{expected} missing from {sans:?}"
        );
    }
    let ca = std::fs::read(server.data_dir().join("server/tls/ca.crt")).unwrap();
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).unwrap();
    server.restart();
    assert_eq!(
        std::fs::read(server.data_dir().join("server/tls/ca.crt")).unwrap(),
        ca
    );
    assert_eq!(
        std::fs::read_to_string(server.data_dir().join("server/token")).unwrap(),
        token
    );
    // kubectl verifies the serving certificate against the CA in the kubeconfig.
    let version = server.ok(&["version", "-o", "json"]);
    assert!(version.contains("\"minor\": \"32\""), "{version}");
}

#[test]
fn the_config_file_sets_flags_and_command_line_flags_win() {
    let server = Server::start_with_config(
        "cluster-domain: edge.local\nservice-cidr: 10.96.0.0/16\nwrite-kubeconfig-mode: \"0640\"\ntoken: s3cret\n",
        &["--service-cidr", "10.44.0.0/16"],
    );
    let sans = serving_sans(&server);
    assert!(
        sans.iter()
            .any(|s| s == "kubernetes.default.svc.edge.local"),
        "{sans:?}"
    );
    assert!(sans.iter().any(|s| s == "10.44.0.1"), "{sans:?}");
    let mode = std::fs::metadata(server.kubeconfig())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).unwrap();
    assert!(token.trim().ends_with("::server:s3cret"), "{token}");
    let svc = server.get_json(&["service", "kubernetes"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.44.0.1");
}

#[test]
fn version_and_bad_flags_are_clear() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("skiff "));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--service-cidr",
            "nonsense",
            "--config",
            "/nonexistent/skiff.yaml",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/skiff.yaml"), "{err}");
}
