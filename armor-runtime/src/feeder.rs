//! armor's telemetry as a gRPC stream that KubeArmor's clients read unchanged: KubeArmor's
//! `feeder.LogService` (`HealthCheck`, `WatchMessages`, `WatchAlerts`, `WatchLogs`) and the
//! standard `grpc.health.v1.Health` service, served on a TCP address or a unix socket
//! ([`serve`]).
//!
//! Each record is written once, as [`Telemetry`]; [`alert_of`] and [`log_of`] render it as
//! the wire's `Alert` or `Log` with the same fields as its JSON line (KubeArmor's names and
//! field numbers: `proto/feeder/feeder.proto`). [`Feed::publish`] hands a record to every
//! client watching its stream, each through a bounded queue of its own: a slow or stalled
//! client loses its own records, counted ([`Feed::clients`]), and never slows the agent, its
//! enforcement or the other clients.
//!
//! Filters as KubeArmor defines them: `WatchAlerts` takes `all` or `policy`, `WatchLogs`
//! `all` or `system`, `WatchMessages` any. Where KubeArmor silently ends the stream of a
//! request with another filter, armor answers `INVALID_ARGUMENT` naming the filters it takes.
//!
//! ```no_run
//! use armor_runtime::feeder::{Feed, Listen};
//! let feed = Feed::new(4096);
//! let server = armor_runtime::feeder::serve(&"127.0.0.1:32767".parse::<Listen>()?, feed.clone())?;
//! println!("serving KubeArmor's LogService on {}", server.address());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use armor_core::telemetry::Telemetry;
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

/// The generated messages, server and client of `feeder.LogService`
/// (`proto/feeder/feeder.proto`, KubeArmor's wire format).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::exhaustive_structs,
    clippy::exhaustive_enums,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/feeder.rs"));
}

/// The generated messages, server and client of `grpc.health.v1.Health`
/// (`proto/grpc/health.proto`).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::exhaustive_structs,
    clippy::exhaustive_enums,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]
pub mod health {
    include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
}

/// The service name clients ask the health service about.
pub const SERVICE: &str = "feeder.LogService";
/// KubeArmor's gRPC port.
pub const KUBEARMOR_PORT: u16 = 32767;

/// Whether `t` is an alert (a policy matched it: `Matched*`), else a log.
pub fn is_alert(t: &Telemetry) -> bool {
    t.kind.as_deref().is_some_and(|k| k.starts_with("Matched"))
}

/// An int64 of the record as the wire's int32 (pids and uids fit; anything else is 0).
fn int32(v: Option<i64>) -> i32 {
    v.and_then(|v| i32::try_from(v).ok()).unwrap_or_default()
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// `EventData`: the `key=value` tokens of `Data`, and of `Resource` for network operations
/// (as KubeArmor fills it).
fn event_data(t: &Telemetry) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut add = |s: &Option<String>| {
        if let Some(s) = s {
            for (k, v) in armor_core::telemetry::tokens(s) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    };
    add(&t.data);
    if t.operation.as_deref() == Some("Network") {
        add(&t.resource);
    }
    out
}

fn owner(t: &Telemetry) -> Option<proto::Podowner> {
    t.owner.as_ref().map(|o| proto::Podowner {
        r#ref: o.kind.clone(),
        name: o.name.clone(),
        namespace: o.namespace.clone(),
    })
}

/// `t` as the wire's `Alert`: every field its JSON line has, under the same name.
pub fn alert_of(t: &Telemetry) -> proto::Alert {
    proto::Alert {
        timestamp: t.timestamp.unwrap_or_default(),
        updated_time: text(&t.updated_time),
        cluster_name: text(&t.cluster_name),
        host_name: text(&t.host_name),
        namespace_name: text(&t.namespace_name),
        pod_name: text(&t.pod_name),
        container_id: text(&t.container_id),
        container_name: text(&t.container_name),
        host_pid: int32(t.host_pid),
        ppid: int32(t.ppid),
        pid: int32(t.pid),
        uid: int32(t.uid),
        policy_name: text(&t.policy_name),
        severity: text(&t.severity),
        tags: text(&t.tags),
        message: text(&t.message),
        r#type: text(&t.kind),
        source: text(&t.source),
        operation: text(&t.operation),
        resource: text(&t.resource),
        data: text(&t.data),
        action: text(&t.action),
        result: text(&t.result),
        container_image: text(&t.container_image),
        parent_process_name: text(&t.parent_process_name),
        process_name: text(&t.process_name),
        host_ppid: int32(t.host_ppid),
        enforcer: text(&t.enforcer),
        labels: text(&t.labels),
        a_tags: t.atags.clone().unwrap_or_default(),
        owner: owner(t),
        cwd: text(&t.cwd),
        tty: text(&t.tty),
        event_data: event_data(t),
        ..proto::Alert::default()
    }
}

/// `t` as the wire's `Log`: every field its JSON line has, under the same name.
pub fn log_of(t: &Telemetry) -> proto::Log {
    proto::Log {
        timestamp: t.timestamp.unwrap_or_default(),
        updated_time: text(&t.updated_time),
        cluster_name: text(&t.cluster_name),
        host_name: text(&t.host_name),
        namespace_name: text(&t.namespace_name),
        pod_name: text(&t.pod_name),
        container_id: text(&t.container_id),
        container_name: text(&t.container_name),
        host_pid: int32(t.host_pid),
        ppid: int32(t.ppid),
        pid: int32(t.pid),
        uid: int32(t.uid),
        r#type: text(&t.kind),
        source: text(&t.source),
        operation: text(&t.operation),
        resource: text(&t.resource),
        data: text(&t.data),
        result: text(&t.result),
        container_image: text(&t.container_image),
        parent_process_name: text(&t.parent_process_name),
        process_name: text(&t.process_name),
        host_ppid: int32(t.host_ppid),
        labels: text(&t.labels),
        owner: owner(t),
        cwd: text(&t.cwd),
        tty: text(&t.tty),
        event_data: event_data(t),
        ..proto::Log::default()
    }
}

/// One of the agent's log lines as the wire's `Message` (`Type` `Message`, `Level` `INFO`), at
/// the time of the call.
pub fn message_of(line: &str, cluster: &str, host: &str) -> proto::Message {
    let (timestamp, updated_time) = armor_core::telemetry::format::now();
    proto::Message {
        timestamp,
        updated_time,
        cluster_name: cluster.to_string(),
        host_name: host.to_string(),
        host_ip: String::new(),
        r#type: "Message".to_string(),
        level: "INFO".to_string(),
        message: line.to_string(),
    }
}

/// Which stream a client watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Stream {
    /// `WatchAlerts`.
    Alerts,
    /// `WatchLogs`.
    Logs,
    /// `WatchMessages`.
    Messages,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Alerts => "alerts",
            Self::Logs => "logs",
            Self::Messages => "messages",
        })
    }
}

/// One record on its way to a client.
#[derive(Debug, Clone)]
enum Item {
    Alert(Arc<proto::Alert>),
    Log(Arc<proto::Log>),
    Message(Arc<proto::Message>),
}

/// What [`Feed::clients`] says of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// A number for the client, unique while the feed lives.
    pub id: u64,
    /// Its address (`127.0.0.1:40112`, or `unix` for a unix socket).
    pub peer: String,
    /// What it watches.
    pub stream: Stream,
    /// Records put in its queue.
    pub queued: u64,
    /// Records it lost: its queue was full.
    pub dropped: u64,
}

/// One connected client: its queue and its counts.
#[derive(Debug)]
struct Client {
    id: u64,
    peer: String,
    stream: Stream,
    tx: tokio::sync::mpsc::Sender<Item>,
    queued: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Hub {
    next: u64,
    clients: Vec<Arc<Client>>,
    /// Counts of clients gone, so that totals never go down.
    gone_queued: u64,
    gone_dropped: u64,
}

/// The fan-out of records to every connected client: cheap to clone (one feed, shared), safe
/// to publish to from any thread, and never blocking.
#[derive(Debug, Clone)]
pub struct Feed {
    hub: Arc<Mutex<Hub>>,
    capacity: usize,
}

impl Feed {
    /// A feed whose clients each have a queue of `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            hub: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// Hands `t` to every client watching its stream ([`is_alert`]: alerts, else logs),
    /// converted once; a client whose queue is full loses it (counted). Never blocks.
    pub fn publish(&self, t: &Telemetry) {
        if is_alert(t) {
            self.send(Stream::Alerts, || Item::Alert(Arc::new(alert_of(t))));
        } else {
            self.send(Stream::Logs, || Item::Log(Arc::new(log_of(t))));
        }
    }

    /// Hands one of the agent's own log lines to every `WatchMessages` client.
    pub fn message(&self, message: impl FnOnce() -> proto::Message) {
        self.send(Stream::Messages, || Item::Message(Arc::new(message())));
    }

    /// Makes the item (once, and only if a client of `stream` has room) and queues it for every
    /// client of `stream` with room; a full queue counts a drop and costs nothing else. Each
    /// client gets the same shared item (its sender copies it out on the server's thread).
    fn send(&self, stream: Stream, make: impl FnOnce() -> Item) {
        let mut hub = self.hub.lock();
        let mut closed = false;
        let mut make = Some(make);
        let mut item: Option<Item> = None;
        for c in hub.clients.iter().filter(|c| c.stream == stream) {
            match c.tx.try_reserve() {
                Ok(permit) => {
                    if item.is_none() {
                        item = make.take().map(|f| f());
                    }
                    if let Some(i) = &item {
                        permit.send(i.clone());
                        c.queued.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => closed = true,
            }
        }
        if closed {
            hub.forget_closed();
        }
    }

    /// Every connected client with its counts.
    pub fn clients(&self) -> Vec<ClientStats> {
        let mut hub = self.hub.lock();
        hub.forget_closed();
        hub.clients.iter().map(|c| c.stats()).collect()
    }

    /// Records queued and dropped over every client since the feed began (gone ones too).
    pub fn totals(&self) -> (u64, u64) {
        let mut hub = self.hub.lock();
        hub.forget_closed();
        let (q, d) = hub.clients.iter().fold((0, 0), |(q, d), c| {
            (
                q + c.queued.load(Ordering::Relaxed),
                d + c.dropped.load(Ordering::Relaxed),
            )
        });
        (hub.gone_queued + q, hub.gone_dropped + d)
    }

    /// A new client of `stream`: its queue's receiving end.
    fn subscribe(&self, stream: Stream, peer: String) -> Subscription {
        let (tx, rx) = tokio::sync::mpsc::channel(self.capacity);
        let mut hub = self.hub.lock();
        hub.next += 1;
        let client = Arc::new(Client {
            id: hub.next,
            peer,
            stream,
            tx,
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        hub.clients.push(client);
        Subscription { rx }
    }
}

impl Client {
    fn stats(&self) -> ClientStats {
        ClientStats {
            id: self.id,
            peer: self.peer.clone(),
            stream: self.stream,
            queued: self.queued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Hub {
    /// Forgets the clients that went away, keeping their counts in the totals.
    fn forget_closed(&mut self) {
        let (gone, kept): (Vec<_>, Vec<_>) = self.clients.drain(..).partition(|c| c.tx.is_closed());
        for c in gone {
            self.gone_queued += c.queued.load(Ordering::Relaxed);
            self.gone_dropped += c.dropped.load(Ordering::Relaxed);
        }
        self.clients = kept;
    }
}

/// A client's queue as the stream gRPC sends from; dropped with the call, which closes the
/// queue (the feed then forgets the client).
struct Subscription {
    rx: tokio::sync::mpsc::Receiver<Item>,
}

/// The items of one kind out of a [`Subscription`].
struct Typed<T> {
    sub: Subscription,
    pick: fn(Item) -> Option<T>,
}

impl<T> futures::Stream for Typed<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.sub.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if let Some(t) = (this.pick)(item) {
                        return Poll::Ready(Some(Ok(t)));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The peer of `req`, for the client's name.
fn peer<T>(req: &Request<T>) -> String {
    req.remote_addr()
        .map_or_else(|| "unix".to_string(), |a| a.to_string())
}

/// `feeder.LogService` over a [`Feed`].
#[derive(Debug, Clone)]
struct LogServer {
    feed: Feed,
}

type Boxed<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl proto::log_service_server::LogService for LogServer {
    async fn health_check(
        &self,
        request: Request<proto::NonceMessage>,
    ) -> Result<Response<proto::ReplyMessage>, Status> {
        Ok(Response::new(proto::ReplyMessage {
            retval: request.into_inner().nonce,
        }))
    }

    type WatchMessagesStream = Boxed<proto::Message>;

    async fn watch_messages(
        &self,
        request: Request<proto::RequestMessage>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        self.watch(
            &request,
            "WatchMessages",
            None,
            Stream::Messages,
            |i| match i {
                Item::Message(m) => Some(Arc::unwrap_or_clone(m)),
                _ => None,
            },
        )
    }

    type WatchAlertsStream = Boxed<proto::Alert>;

    async fn watch_alerts(
        &self,
        request: Request<proto::RequestMessage>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        self.watch(
            &request,
            "WatchAlerts",
            Some("policy"),
            Stream::Alerts,
            |i| match i {
                Item::Alert(a) => Some(Arc::unwrap_or_clone(a)),
                _ => None,
            },
        )
    }

    type WatchLogsStream = Boxed<proto::Log>;

    async fn watch_logs(
        &self,
        request: Request<proto::RequestMessage>,
    ) -> Result<Response<Self::WatchLogsStream>, Status> {
        self.watch(
            &request,
            "WatchLogs",
            Some("system"),
            Stream::Logs,
            |i| match i {
                Item::Log(l) => Some(Arc::unwrap_or_clone(l)),
                _ => None,
            },
        )
    }
}

impl LogServer {
    /// A new client of `stream`, when its filter is `all` or `other` (any filter without
    /// `other`); else `INVALID_ARGUMENT` naming the filters `method` takes.
    fn watch<T: Send + 'static>(
        &self,
        request: &Request<proto::RequestMessage>,
        method: &str,
        other: Option<&str>,
        stream: Stream,
        pick: fn(Item) -> Option<T>,
    ) -> Result<Response<Boxed<T>>, Status> {
        let filter = &request.get_ref().filter;
        if let Some(other) = other
            && filter != "all"
            && filter != other
        {
            return Err(Status::invalid_argument(format!(
                "{method}: filter `{filter}` is not `all` or `{other}`"
            )));
        }
        let sub = self.feed.subscribe(stream, peer(request));
        Ok(Response::new(Box::pin(Typed { sub, pick })))
    }
}

/// `grpc.health.v1.Health`: the server and [`SERVICE`] are serving while the server runs.
#[derive(Debug, Clone, Copy)]
struct HealthServer;

fn serving(service: &str) -> Result<health::HealthCheckResponse, Status> {
    if service.is_empty() || service == SERVICE {
        Ok(health::HealthCheckResponse {
            status: health::health_check_response::ServingStatus::Serving.into(),
        })
    } else {
        Err(Status::not_found(format!("unknown service `{service}`")))
    }
}

#[tonic::async_trait]
impl health::health_server::Health for HealthServer {
    async fn check(
        &self,
        request: Request<health::HealthCheckRequest>,
    ) -> Result<Response<health::HealthCheckResponse>, Status> {
        serving(&request.get_ref().service).map(Response::new)
    }

    type WatchStream = Boxed<health::HealthCheckResponse>;

    async fn watch(
        &self,
        request: Request<health::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let now = serving(&request.get_ref().service).unwrap_or(health::HealthCheckResponse {
            status: health::health_check_response::ServingStatus::ServiceUnknown.into(),
        });
        // The status now, then nothing until the server stops (it does not change meanwhile).
        let stream = futures::StreamExt::chain(
            futures::stream::once(async move { Ok(now) }),
            futures::stream::pending(),
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Listen {
    /// A TCP address (`127.0.0.1:32767`).
    Tcp(SocketAddr),
    /// A unix socket (`unix:/run/armor/feed.sock`), created with mode 0660.
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = FeedError;

    /// `unix:PATH` (an absolute path), `HOST:PORT` (an IP address) or `:PORT` (127.0.0.1).
    fn from_str(s: &str) -> Result<Self, FeedError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(FeedError::Address(format!(
                    "`{s}`: a unix socket needs an absolute path (unix:/run/armor/feed.sock)"
                )));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let full = if s.starts_with(':') {
            format!("127.0.0.1{s}")
        } else {
            s.to_string()
        };
        full.parse().map(Self::Tcp).map_err(|_| {
            FeedError::Address(format!(
                "`{s}`: expected IP:PORT, :PORT (127.0.0.1) or unix:/PATH"
            ))
        })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Why the feed's server cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The address is not one (see [`Listen`]'s `FromStr`).
    #[error("gRPC address {0}")]
    Address(String),
    /// A non-loopback address without [`ServeOptions::allow_remote`].
    #[error(
        "gRPC address {0} is not a loopback address: anyone who reaches it reads every alert \
         and log of this machine (allow it explicitly, and firewall it)"
    )]
    Remote(SocketAddr),
    /// Binding, or starting the server's thread, failed.
    #[error("gRPC server on {address}: {source}")]
    Io {
        /// Where.
        address: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// How [`serve_with`] serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Accept a TCP address that is not loopback.
    pub allow_remote: bool,
    /// The group a unix socket belongs to (its members may connect: mode 0660); `None`: the
    /// agent's own group.
    pub group: Option<u32>,
}

/// The running server: its address; it serves until the process ends.
#[derive(Debug)]
pub struct Server {
    address: Listen,
}

impl Server {
    /// Where it listens (for a TCP port 0, the port it got).
    pub fn address(&self) -> &Listen {
        &self.address
    }
}

/// Serves `feed` on `listen` (loopback or a unix socket only; see [`serve_with`]).
pub fn serve(listen: &Listen, feed: Feed) -> Result<Server, FeedError> {
    serve_with(listen, feed, ServeOptions::default())
}

/// Serves `feed` (`feeder.LogService`) and the health service on `listen`, on a thread of its
/// own, until the process ends. A TCP address must be loopback unless
/// [`ServeOptions::allow_remote`]. A unix socket is bound under a temporary name, given mode
/// 0660 and its group ([`ServeOptions::group`]), then renamed into place, so no client connects before its mode is set; a socket
/// file already there is replaced only when nothing answers on it (a stale one), never when
/// another server is listening. The server checks each connection's liveness with HTTP/2
/// keepalives (every 30 s, 10 s to answer), so a client whose host vanished is dropped with its
/// queue.
pub fn serve_with(listen: &Listen, feed: Feed, options: ServeOptions) -> Result<Server, FeedError> {
    let io = |source| FeedError::Io {
        address: listen.to_string(),
        source,
    };
    enum Bound {
        Tcp(std::net::TcpListener),
        Unix(std::os::unix::net::UnixListener),
    }
    // Everything that can fail is done here, before any thread or runtime exists.
    let (address, bound) = match listen {
        Listen::Tcp(addr) => {
            if !addr.ip().is_loopback() && !options.allow_remote {
                return Err(FeedError::Remote(*addr));
            }
            let l = std::net::TcpListener::bind(addr).map_err(io)?;
            l.set_nonblocking(true).map_err(io)?;
            let at = l.local_addr().map_err(io)?;
            (Listen::Tcp(at), Bound::Tcp(l))
        }
        Listen::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another server listens on this socket",
                    )));
                }
                std::fs::remove_file(path).map_err(io)?;
            }
            let mut tmp = path.clone().into_os_string();
            tmp.push(format!(".{}.new", std::process::id()));
            let tmp = PathBuf::from(tmp);
            let _ = std::fs::remove_file(&tmp);
            let l = std::os::unix::net::UnixListener::bind(&tmp).map_err(io)?;
            let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
                .and_then(|()| match options.group {
                    Some(gid) => std::os::unix::fs::chown(&tmp, None, Some(gid)),
                    None => Ok(()),
                })
                .and_then(|()| std::fs::rename(&tmp, path))
                .and_then(|()| l.set_nonblocking(true));
            if let Err(e) = placed {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(e));
            }
            (Listen::Unix(path.clone()), Bound::Unix(l))
        }
    };
    let name = address.to_string();
    std::thread::Builder::new()
        .name("armor-feed".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("gRPC feed on {name}: no runtime: {e}");
                    return;
                }
            };
            let router = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
                .add_service(proto::log_service_server::LogServiceServer::new(
                    LogServer { feed },
                ))
                .add_service(health::health_server::HealthServer::new(HealthServer));
            runtime.block_on(async move {
                let ended = match bound {
                    Bound::Tcp(l) => match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            router
                                .serve_with_incoming(
                                    tokio_stream::wrappers::TcpListenerStream::new(l),
                                )
                                .await
                        }
                        Err(e) => {
                            tracing::error!("gRPC feed on {name}: {e}");
                            return;
                        }
                    },
                    Bound::Unix(l) => match tokio::net::UnixListener::from_std(l) {
                        Ok(l) => {
                            router
                                .serve_with_incoming(
                                    tokio_stream::wrappers::UnixListenerStream::new(l),
                                )
                                .await
                        }
                        Err(e) => {
                            tracing::error!("gRPC feed on {name}: {e}");
                            return;
                        }
                    },
                };
                if let Err(e) = ended {
                    tracing::error!("gRPC feed on {name} stopped: {e}");
                }
            });
        })
        .map_err(io)?;
    Ok(Server { address })
}
