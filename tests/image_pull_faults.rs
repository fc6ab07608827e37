//! Pull behaviour under faults a real registry does not produce on demand, against
//! a small in-test registry on loopback: a layer download that breaks midway
//! (resumed with a Range request), and a registry serving corrupt layer bytes
//! (refused, nothing stored).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use skiff::image::{ImageError, ImageStore, Platform, PullOptions, RegistriesConfig, StoreOptions};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A one-image registry: manifest `app:v1`, its config and one gzip layer.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn build_image() -> Image {
    let mut tar = tar::Builder::new(Vec::new());
    // Incompressible content, so the gzip layer is big enough to break in half.
    let body: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "data.bin", body.as_slice())
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]}
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}]
    })
    .to_string()
    .into_bytes();
    Image {
        manifest,
        config,
        layer,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// The first layer download stops halfway with a broken connection.
    BreakOnce,
    /// The layer's bytes are wrong (same size).
    Corrupt,
}

#[derive(Clone)]
struct Mock {
    blobs: Arc<HashMap<String, Vec<u8>>>,
    manifest: Arc<Vec<u8>>,
    layer_digest: String,
    fault: Fault,
    /// Range header (or "-") of every layer request.
    layer_requests: Arc<Mutex<Vec<String>>>,
}

async fn manifest(State(mock): State<Mock>, UrlPath(_reference): UrlPath<String>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.manifest.v1+json",
        )],
        mock.manifest.as_ref().clone(),
    )
        .into_response()
}

async fn blob(
    State(mock): State<Mock>,
    UrlPath(digest): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(bytes) = mock.blobs.get(&digest).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
        )
            .into_response();
    };
    if digest != mock.layer_digest {
        return bytes.into_response();
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let attempt = {
        let mut requests = mock.layer_requests.lock().unwrap();
        requests.push(range.clone().unwrap_or_else(|| "-".to_string()));
        requests.len()
    };
    match mock.fault {
        Fault::Corrupt => {
            let mut wrong = bytes;
            let last = wrong.len() - 1;
            wrong[last] ^= 0xff;
            wrong.into_response()
        }
        Fault::BreakOnce if attempt == 1 => {
            let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
            let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) })
                .chain(futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Err(std::io::Error::other("connection dropped"))
                }));
            Response::builder()
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Fault::BreakOnce => match range.and_then(|r| parse_range(&r)) {
            Some(start) => Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
                )
                .body(Body::from(bytes[start..].to_vec()))
                .unwrap(),
            None => bytes.into_response(),
        },
    }
}

use futures::StreamExt;

fn parse_range(header: &str) -> Option<usize> {
    header
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

async fn start(fault: Fault) -> (u16, Mock, tokio::task::JoinHandle<()>) {
    let image = build_image();
    let mut blobs = HashMap::new();
    blobs.insert(digest(&image.config), image.config.clone());
    blobs.insert(digest(&image.layer), image.layer.clone());
    let mock = Mock {
        blobs: Arc::new(blobs),
        manifest: Arc::new(image.manifest.clone()),
        layer_digest: digest(&image.layer),
        fault,
        layer_requests: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route("/v2/app/manifests/{reference}", get(manifest))
        .route("/v2/app/blobs/{digest}", get(blob))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (port, mock, task)
}

fn store(root: &std::path::Path) -> ImageStore {
    ImageStore::open(
        root,
        StoreOptions {
            platform: Platform::parse("linux/amd64").unwrap(),
            registries: RegistriesConfig::default(),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_layer_download_resumes_where_it_stopped() {
    let (port, mock, task) = start(Fault::BreakOnce).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let image = store
        .pull(&format!("127.0.0.1:{port}/app:v1"), PullOptions::default())
        .await
        .unwrap();
    let requests = mock.layer_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0], "-");
    let resumed_at = parse_range(&requests[1]).expect("second request asks for a range");
    assert!(resumed_at > 0, "{requests:?}");
    let lowers = store.rootfs_layers(&image).await.unwrap();
    assert_eq!(
        std::fs::metadata(lowers[0].join("data.bin")).unwrap().len(),
        256 * 1024
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_layer_bytes_are_refused() {
    let (port, mock, task) = start(Fault::Corrupt).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let err = store
        .pull(&format!("127.0.0.1:{port}/app:v1"), PullOptions::default())
        .await
        .unwrap_err();
    let ImageError::Pull { failures, .. } = &err else {
        panic!("unexpected error {err}");
    };
    assert!(
        matches!(failures[0].1, ImageError::DigestMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&mock.layer_digest), "{err}");
    assert_eq!(mock.layer_requests.lock().unwrap().len(), 1, "not retried");
    assert!(store.list().unwrap().is_empty());
    let layer_hex = mock.layer_digest.trim_start_matches("sha256:");
    assert!(!tmp
        .path()
        .join("content/blobs/sha256")
        .join(layer_hex)
        .exists());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("content/ingest"))
            .unwrap()
            .count(),
        0,
        "no temp file left behind"
    );
    task.abort();
}
