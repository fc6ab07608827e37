//! A delete racing other writers (a controller's status or label write between the
//! server's read and its delete) is retried on the fresh object, as kube-apiserver
//! does: the client sees 409 only when its own precondition fails.

mod common;

use common::Server;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};

async fn client(server: &Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "data": {"n": "0"},
    }))
    .unwrap()
}

/// Patches `name` as fast as it can until it is gone; returns how many writes landed.
async fn keep_patching(api: Api<ConfigMap>, name: String) -> usize {
    let mut landed = 0;
    for n in 1.. {
        let patch = serde_json::json!({"data": {"n": n.to_string()}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => landed += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => return landed,
            Err(e) => panic!("patching {name}: {e}"),
        }
    }
    landed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_racing_concurrent_writes_succeeds_without_409() {
    let server = Server::start();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&server).await);
    for round in 0..30 {
        let name = format!("raced-{round}");
        api.create(&PostParams::default(), &config_map(&name))
            .await
            .unwrap();
        let writers: Vec<_> = (0..3)
            .map(|_| tokio::spawn(keep_patching(api.clone(), name.clone())))
            .collect();
        // Let the writers get going, then delete in the middle of their stream.
        let started = std::time::Instant::now();
        while api.get(&name).await.unwrap().data.unwrap()["n"] == "0" {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "round {round}: no patch landed"
            );
            tokio::task::yield_now().await;
        }
        let deleted = api.delete(&name, &DeleteParams::default()).await;
        assert!(deleted.is_ok(), "round {round}: {deleted:?}");
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(matches!(
            api.get(&name).await,
            Err(kube::Error::Api(e)) if e.code == 404
        ));
    }
}

#[tokio::test]
async fn a_delete_with_a_stale_resource_version_precondition_is_still_409() {
    let server = Server::start();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&server).await);
    let created = api
        .create(&PostParams::default(), &config_map("pinned"))
        .await
        .unwrap();
    let patch = serde_json::json!({"data": {"n": "1"}});
    api.patch("pinned", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let stale = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: created.metadata.resource_version,
            uid: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete("pinned", &stale).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409, "{e:?}"),
        other => panic!("expected 409, got {other:?}"),
    }
    assert!(api.get("pinned").await.is_ok());
}
