//! `skiff server`: starts the components in order — store, certificates, API,
//! default objects, controllers and scheduler, then its own node agent (unless
//! `--disable-agent`) — signals readiness, runs background upkeep (compaction,
//! certificate renewal) and stops cleanly on SIGINT/SIGTERM.
//!
//! May call: every module but `cli`: store, pki, api (served through `serve`),
//! component, controllers, scheduler, host, and the node agent (configured
//! by `config.node`, the same node settings `skiff agent` takes).

pub mod own_node;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{self, auth::PeerIdentity, bootstrap, ApiConfig, ApiState};
use crate::config::ServerConfig;
use crate::controllers;
use crate::host::notify::Notifier;
use crate::host::{default_address, hostname, local_addresses};
use crate::pki::{self, CertOptions, Pki};
use crate::serve;
use crate::store::{SqliteOptions, SqliteStore, Store};

const COMPACT_EVERY: Duration = Duration::from_secs(10);
/// History kept per byte of live data.
const HISTORY_PER_LIVE_BYTE: u64 = 2;
/// History kept however little is live.
const HISTORY_MIN_BYTES: u64 = 16 * 1024;
const RENEW_CHECK_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("certificates: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("creating default objects: {0}")]
    Bootstrap(api::status::ApiError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("controllers: {0}")]
    Client(#[from] crate::client::ClientError),
}

/// Paths under the data dir.
struct Layout {
    db: PathBuf,
    tls: PathBuf,
    token: PathBuf,
}

impl Layout {
    fn new(config: &ServerConfig) -> Self {
        let server = config.data_dir.join("server");
        Layout {
            db: server.join("db").join("state.db"),
            tls: server.join("tls"),
            token: server.join("token"),
        }
    }
}

/// Runs the server until a stop signal. `notifier` (systemd's `NOTIFY_SOCKET`) is told
/// `READY=1` once the API is ready and the server's own node is Ready (once the API
/// and controllers are up with `--disable-agent`), and `STOPPING=1` on a stop signal.
pub async fn run(config: ServerConfig, notifier: Option<Notifier>) -> Result<(), ServerError> {
    let started = Instant::now();
    let fd_limit = serve::raise_fd_limit();
    let layout = Layout::new(&config);
    // The data dir holds the database and keys: owner-only, whatever the umask.
    pki::secure_dir(&config.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteOptions {
        path: layout.db.clone(),
    })?);
    // Objects older versions stored that typed clients cannot decode.
    match api::repair::drop_null_list_items(store.as_ref()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(repaired = n, "repaired stored objects with null list items"),
        Err(e) => tracing::warn!(error = %e, "checking stored objects failed"),
    }
    let advertise = config.advertise_address.unwrap_or_else(default_address);
    let pki = Arc::new(Pki::load_or_create(
        &layout.tls,
        &cert_options(&config, advertise),
    )?);
    let token = pki.load_or_create_token(&layout.token, config.token.as_deref())?;
    let join_secret = pki::parse_token(&token)?.secret;

    let port = config.https_listen_port;
    let state = ApiState::new(
        store.clone(),
        ApiConfig {
            service_cidr: config.service_cidr,
            advertise_address: SocketAddr::new(advertise, port).to_string(),
            join_secret,
        },
        Some(Arc::new(api::join::PkiIssuer(pki.clone()))),
    );
    let signing_key = pki::signing::SigningKey::load_or_create(&layout.tls)?;
    let issuer = api::satoken::TokenAuthority::issuer_for(&config.cluster_domain);
    api::satoken::install(
        &state,
        api::satoken::TokenAuthority::new(signing_key, issuer),
    );
    let router = api::router(state.clone());
    let address = SocketAddr::new(config.bind_address, port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Listen { address, source })?;
    let limits = serve::ConnectionLimits::for_fd_limit(fd_limit);
    tracing::info!(
        fd_limit,
        max_connections = limits.max_connections,
        "connection limits"
    );
    tokio::spawn(serve::serve_limited(
        listener,
        pki.server_tls_config()?,
        router.clone(),
        PeerIdentity,
        limits,
    ));

    let endpoint = bootstrap::ApiEndpoint {
        service_ip: IpAddr::V4(config.service_cidr.nth(1)),
        address: advertise,
        port,
    };
    bootstrap::ensure_defaults(&router, &endpoint)
        .await
        .map_err(ServerError::Bootstrap)?;
    bootstrap::ensure_default_policy(&router)
        .await
        .map_err(ServerError::Bootstrap)?;
    if let Err(e) = bootstrap::ensure_cluster_dns(&router, config.cluster_dns).await {
        tracing::warn!(error = %e, "the kube-dns service could not be created");
    }
    if let Err(e) = bootstrap::ensure_local_path_class(&router).await {
        tracing::warn!(error = %e, "the local-path storage class could not be created");
    }
    write_admin_kubeconfig(&config, &pki)?;
    state.set_ready();
    tracing::info!(
        %address,
        elapsed_ms = started.elapsed().as_millis() as u64,
        kubeconfig = %config.write_kubeconfig.display(),
        "skiff server is ready"
    );
    println!(
        "skiff server ready on https://{address} (kubeconfig: {})",
        config.write_kubeconfig.display()
    );

    start_controllers(&config, &pki).await?;
    if config.disable_agent {
        if let Some(notifier) = &notifier {
            notifier.ready();
        }
    } else {
        tokio::spawn(run_local_agent(
            config.clone(),
            advertise,
            token.clone(),
            notifier.clone(),
        ));
        label_own_node(&config, &pki).await?;
    }
    tokio::spawn(compact_forever(
        store,
        config.history_revisions,
        config.history_min_age,
    ));
    tokio::spawn(renew_forever(pki, config));
    crate::host::notify::stop_requested().await;
    tracing::info!("skiff server stopping");
    if let Some(notifier) = &notifier {
        notifier.stopping();
    }
    Ok(())
}

/// The server's own node: the same agent `skiff agent` runs, configured by the same
/// node flags (`config.node`), joined over the loopback with the cluster's token,
/// labelled as the control plane by the server ([`own_node`]).
async fn run_local_agent(
    config: ServerConfig,
    advertise: IpAddr,
    token: String,
    notifier: Option<Notifier>,
) {
    if !nix::unistd::geteuid().is_root() {
        tracing::error!("the server's agent needs root to run containers; it is not started (use --disable-agent to silence this)");
        never_ready(notifier.is_some());
        return;
    }
    let host = if config.bind_address.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        config.bind_address
    };
    let node_ip = config.node.node_ip.unwrap_or(advertise);
    let mut agent = config.node.agent_config(
        format!(
            "https://{}",
            SocketAddr::new(host, config.https_listen_port)
        ),
        token,
        config.data_dir.clone(),
        node_ip,
        true,
        crate::agent::machine_capacity(),
    );
    // The labels a node may not set on itself are the server's (see own_node).
    agent.labels = own_node::split_labels(&config.node.labels).0;
    // Started once the API is ready: the node being Ready is the server being ready.
    agent.notify = notifier;
    let cluster = crate::config::ClusterNetwork {
        cluster_cidr: config.cluster_cidr,
        service_cidr: config.service_cidr,
        cluster_dns: config.cluster_dns,
        cluster_domain: config.cluster_domain.clone(),
    };
    let runtime = match config
        .node
        .runtime_config(config.data_dir.clone(), node_ip, cluster)
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "the server's agent is not started");
            never_ready(agent.notify.is_some());
            return;
        }
    };
    if let Err(e) = crate::agent::run_containers(agent, runtime).await {
        tracing::error!(error = %e, "the server's agent stopped");
    }
}

/// Says why a service manager waiting for `READY=1` keeps waiting.
fn never_ready(notifying: bool) {
    if notifying {
        tracing::error!("the service manager is not told READY=1: this server's node cannot become Ready (or run with --disable-agent)");
    }
}

/// Credentials of an in-server component: a `system:masters` client certificate for
/// `user`, reaching this server's API over loopback (or its bind address).
fn admin_credentials(
    config: &ServerConfig,
    pki: &Pki,
    user: &str,
) -> Result<crate::client::Credentials, ServerError> {
    let (cert_pem, key_pem) = pki.issue_client_cert(user, &["system:masters"], 365)?;
    let host = match config.bind_address {
        a if a.is_unspecified() || a.is_loopback() => "127.0.0.1".to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    Ok(crate::client::Credentials {
        server: format!("https://{host}:{}", config.https_listen_port),
        ca_pem: pki.ca_pem().to_string(),
        cert_pem,
        key_pem,
    })
}

/// Starts labelling the server's own node (see [`own_node`]), as an admin client.
async fn label_own_node(config: &ServerConfig, pki: &Pki) -> Result<(), ServerError> {
    let credentials = admin_credentials(config, pki, "system:skiff-server")?;
    let client = crate::client::connect(&credentials, &crate::client::user_agent("server")).await?;
    let labels = own_node::split_labels(&config.node.labels).1;
    tokio::spawn(own_node::label_when_registered(
        client,
        config.node.node_name.clone(),
        labels,
    ));
    Ok(())
}

/// The controllers and the scheduler, as API clients with their own certificate.
async fn start_controllers(config: &ServerConfig, pki: &Pki) -> Result<(), ServerError> {
    let credentials = admin_credentials(config, pki, "system:kube-controller-manager")?;
    let settings = controllers::Settings {
        cluster_cidr: config.cluster_cidr,
        local_storage_path: config.default_local_storage_path.clone(),
        ..Default::default()
    };
    let scheduler_client =
        crate::client::connect(&credentials, &crate::client::user_agent("scheduler")).await?;
    let scheduler_ctx = std::sync::Arc::new(controllers::Context {
        recorder: controllers::Recorder::new(scheduler_client.clone(), "default-scheduler"),
        client: scheduler_client,
        settings: settings.clone(),
    });
    controllers::supervise("scheduler", scheduler_ctx, crate::scheduler::run);
    controllers::start_service_account_controllers(&credentials, settings.clone(), pki.ca_pem())
        .await?;
    controllers::start_all(&credentials, settings).await?;
    Ok(())
}

fn cert_options(config: &ServerConfig, advertise: IpAddr) -> CertOptions {
    let mut addresses = local_addresses();
    if !addresses.contains(&advertise) {
        addresses.push(advertise);
    }
    CertOptions {
        hostname: hostname(),
        sans: config.tls_san.clone(),
        cluster_domain: config.cluster_domain.clone(),
        first_service_ip: IpAddr::V4(config.service_cidr.nth(1)),
        node_addresses: addresses,
    }
}

fn write_admin_kubeconfig(config: &ServerConfig, pki: &Pki) -> Result<(), ServerError> {
    let host = match config.bind_address {
        a if a.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    let url = format!("https://{host}:{}", config.https_listen_port);
    let (cert, key) = pki.admin_credentials();
    pki::write_kubeconfig(
        &config.write_kubeconfig,
        config.write_kubeconfig_mode,
        &url,
        pki.ca_pem(),
        &cert,
        &key,
    )?;
    Ok(())
}

/// Keeps at most the newest `keep` revisions of history, and no more history than
/// `HISTORY_PER_LIVE_BYTE` times the live data (at least `HISTORY_MIN_BYTES`), so the
/// database stays a small multiple of what it holds however hard one object churns;
/// but never compacts revisions younger than `min_age` (`--history-min-age`, 300 s, as etcd
/// under Kubernetes), so lists paged over a busy cluster and watchers that reconnect
/// keep working. Older revisions are compacted and their space reclaimed;
/// watchers that fall further behind get 410 Gone and relist, as with etcd.
async fn compact_forever(store: Arc<dyn Store>, keep: i64, min_age: Duration) {
    let mut ticker = tokio::time::interval(COMPACT_EVERY);
    // (when, current revision then), oldest first: how far back is old enough.
    let mut seen: std::collections::VecDeque<(Instant, i64)> = Default::default();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        seen.push_back((now, store.current_revision()));
        while seen.len() >= 2 && now.duration_since(seen[1].0) >= min_age {
            seen.pop_front();
        }
        let old_enough = seen
            .front()
            .filter(|(at, _)| now.duration_since(*at) >= min_age)
            .map_or(0, |(_, revision)| *revision);
        let by_count = store.current_revision() - keep;
        let by_size = match store.live_bytes().await {
            Ok(live) => {
                let budget = (live * HISTORY_PER_LIVE_BYTE).max(HISTORY_MIN_BYTES);
                store.history_start_within(budget).await.unwrap_or(0)
            }
            Err(_) => 0,
        };
        let target = by_count.max(by_size).min(old_enough);
        if target > store.compacted_revision() {
            if let Err(e) = store.compact(target).await {
                tracing::warn!(error = %e, "compaction failed");
            }
        }
    }
}

/// Renews leaf certificates in place (the TLS listener picks the new serving
/// certificate up at once) and rewrites the admin kubeconfig that embeds the old one.
async fn renew_forever(pki: Arc<Pki>, config: ServerConfig) {
    let mut ticker = tokio::time::interval(RENEW_CHECK_EVERY);
    loop {
        ticker.tick().await;
        match pki.renew_if_needed() {
            Ok(true) => {
                tracing::info!("renewed leaf certificates");
                if let Err(e) = write_admin_kubeconfig(&config, &pki) {
                    tracing::warn!(error = %e, "rewriting the kubeconfig after renewal failed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "certificate renewal failed"),
        }
    }
}
