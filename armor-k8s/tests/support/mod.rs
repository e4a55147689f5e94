//! A real Kubernetes control plane for the tests: etcd and kube-apiserver from
//! `scripts/k8s-tools` (upstream Go modules, built once per version), on 127.0.0.1 ports of
//! their own, with the API server's self-signed serving certificate, a static admin token and
//! RBAC on. Everything lives in one temporary directory and is killed and removed on drop.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The admin token (group `system:masters`).
pub(crate) const ADMIN_TOKEN: &str = "armor-test-admin-token";
/// A token of the agent's service account (`armor/armor-agent` of deploy/rbac.yaml): the API
/// server authenticates it as that service account, and RBAC grants it what deploy/ binds.
pub(crate) const AGENT_TOKEN: &str = "armor-test-agent-token";
/// The service account user [`AGENT_TOKEN`] authenticates as.
pub(crate) const AGENT_USER: &str = "system:serviceaccount:armor:armor-agent";

/// The test tool, or why the test cannot run (`None` after printing the reason; under `CI=true`
/// a missing tool is a failure, not a skip).
pub(crate) fn testenv() -> Option<PathBuf> {
    match std::env::var_os("ARMOR_K8S_TESTENV") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        found => {
            let why = match found {
                Some(p) => format!(
                    "ARMOR_K8S_TESTENV={} is not a file",
                    Path::new(&p).display()
                ),
                None => "ARMOR_K8S_TESTENV is not set".to_string(),
            };
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(
                !ci,
                "{why}: scripts/test builds the real kube-apiserver (scripts/k8s-tools) first"
            );
            println!(
                "skipping: {why}; run `export ARMOR_K8S_TESTENV=$(scripts/k8s-tools)` to build \
                 the real kube-apiserver and etcd"
            );
            None
        }
    }
}

/// Three distinct free loopback ports (held together while chosen, so they differ; another
/// process may still take one before the server binds it, which fails the start loudly).
fn free_ports() -> (u16, u16, u16) {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    let port = |i: usize| {
        listeners[i]
            .local_addr()
            .map(|a| a.port())
            .expect("a bound port")
    };
    (port(0), port(1), port(2))
}

/// A running etcd and kube-apiserver.
pub(crate) struct ControlPlane {
    tool: PathBuf,
    /// The directory everything lives in.
    pub(crate) dir: PathBuf,
    etcd: Child,
    apiserver: Option<Child>,
    etcd_url: String,
    /// `https://127.0.0.1:PORT`.
    pub(crate) url: String,
    port: u16,
}

impl ControlPlane {
    /// Starts etcd and the API server for test `tag`; `None` when the tool is not built (see
    /// [`testenv`]).
    pub(crate) async fn start(tag: &str) -> Option<Self> {
        let tool = testenv()?;
        let dir = std::env::temp_dir().join(format!("armor-k8s-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("pki")).expect("test directory");
        let status = Command::new(&tool)
            .arg("keygen")
            .arg(dir.join("sa.key"))
            .arg(dir.join("sa.pub"))
            .status()
            .expect("keygen runs");
        assert!(status.success(), "keygen failed");
        let (client, peer, port) = free_ports();
        let etcd_url = format!("http://127.0.0.1:{client}");
        let log = fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let etcd = Command::new(&tool)
            .env("ARMOR_TESTENV_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .arg("etcd")
            .args(["--name", "armor-test", "--log-level", "warn"])
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!(
                "--initial-cluster=armor-test=http://127.0.0.1:{peer}"
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        fs::write(
            dir.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},armor-admin,armor-admin,\"system:masters\"\n\
                 {AGENT_TOKEN},{AGENT_USER},armor-agent,\"system:serviceaccounts,system:serviceaccounts:armor\"\n"
            ),
        )
        .expect("token file");
        let mut cp = Self {
            tool,
            dir,
            etcd,
            apiserver: None,
            etcd_url,
            url: format!("https://127.0.0.1:{port}"),
            port,
        };
        cp.start_apiserver().await;
        Some(cp)
    }

    /// Adds a static token for `user` in `groups` (takes effect on the next API server start).
    pub(crate) fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        let mut text = fs::read_to_string(self.dir.join("tokens.csv")).expect("token file");
        text.push_str(&format!("{token},{user},{user},\"{}\"\n", groups.join(",")));
        fs::write(self.dir.join("tokens.csv"), text).expect("token file");
    }

    /// Starts the API server (again) and waits until it is ready.
    pub(crate) async fn start_apiserver(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("apiserver.log"))
            .expect("apiserver log");
        let (key, public) = (self.dir.join("sa.key"), self.dir.join("sa.pub"));
        let child = Command::new(&self.tool)
            .env("ARMOR_TESTENV_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .arg("kube-apiserver")
            .arg(format!("--etcd-servers={}", self.etcd_url))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            // A loopback address cannot be the `kubernetes` service's endpoint; nothing here
            // reaches the API server through the service.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--cert-dir={}", self.dir.join("pki").display()))
            .arg(format!(
                "--token-auth-file={}",
                self.dir.join("tokens.csv").display()
            ))
            .arg(format!("--service-account-key-file={}", public.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                key.display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--authorization-mode=RBAC")
            // No controller manager runs: pods need no service account to exist.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--enable-priority-and-fairness=false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kube-apiserver starts");
        self.apiserver = Some(child);
        self.wait_ready(Duration::from_secs(120)).await;
    }

    /// Kills the API server (etcd keeps the data).
    pub(crate) fn stop_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the API server answers and its `default` namespace exists (created by a
    /// post-start hook).
    async fn wait_ready(&mut self, deadline: Duration) {
        let start = Instant::now();
        let ca = self.dir.join("pki/apiserver.crt");
        loop {
            if let Some(c) = self.apiserver.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "kube-apiserver exited ({status}):\n{}",
                    self.log_tail("apiserver.log")
                );
            }
            if ca.exists() {
                let client = self.admin().await;
                let namespaces: Api<Namespace> = Api::all(client);
                if namespaces.get("default").await.is_ok() {
                    return;
                }
            }
            assert!(
                start.elapsed() < deadline,
                "kube-apiserver not ready after {deadline:?}:\n{}",
                self.log_tail("apiserver.log")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The last lines of a log in the directory.
    pub(crate) fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A kubeconfig file for `token` (also usable with kubectl when debugging).
    pub(crate) fn kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {token}\n\
             contexts:\n- name: {name}\n  context:\n    cluster: test\n    user: {name}\n\
             current-context: {name}\n",
            self.url,
            self.dir.join("pki/apiserver.crt").display()
        );
        fs::write(&path, text).expect("kubeconfig");
        path
    }

    /// A client authenticated with `token`.
    pub(crate) async fn client_with(&self, token: &str) -> Client {
        let kc = Kubeconfig::read_from(self.kubeconfig("user", token)).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }

    /// The admin client.
    pub(crate) async fn admin(&self) -> Client {
        self.client_with(ADMIN_TOKEN).await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A control plane for test `tag` with deploy/'s CRDs (established) and RBAC, and its admin
/// client; `None` when the tool is not built (see [`testenv`]).
pub(crate) async fn with_deploy_rbac(tag: &str) -> Option<(ControlPlane, Client)> {
    let cp = ControlPlane::start(tag).await?;
    let admin = cp.admin().await;
    apply_file(&admin, &repo().join("deploy/crds.yaml")).await;
    apply_file(&admin, &repo().join("deploy/rbac.yaml")).await;
    wait_crds_established(&admin).await;
    Some((cp, admin))
}

/// The API server's `apiserver_request_total` by `VERB resource[/subresource]`, from its
/// `/metrics` (read as `admin`).
pub(crate) async fn request_counts(admin: &Client) -> std::collections::BTreeMap<String, f64> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = admin.request_text(req).await.expect("the metrics");
    let mut out = std::collections::BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let label = |name: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches(['"', '}']).to_string())
                .unwrap_or_default()
        };
        let key = match label("subresource").as_str() {
            "" => format!("{} {}", label("verb"), label("resource")),
            sub => format!("{} {}/{sub}", label("verb"), label("resource")),
        };
        let value: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// Creates every object of the YAML file at `path` (any kind the API server serves), in order.
pub(crate) async fn apply_file(client: &Client, path: &Path) {
    use kube::api::{DynamicObject, PostParams};
    use kube::core::GroupVersionKind;
    use kube::discovery::{Scope, pinned_kind};
    let text = fs::read_to_string(path).expect("manifest");
    let docs = armor_core::crd::documents(&text, &path.display().to_string()).expect("YAML");
    for doc in docs {
        let api_version = doc["apiVersion"].as_str().expect("apiVersion");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, doc["kind"].as_str().expect("kind"));
        let (ar, caps) = pinned_kind(client, &gvk)
            .await
            .expect("a kind the API serves");
        let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("an object");
        let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &ar),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// The repository's root.
/// The API of policy `kind` (`KubeArmorPolicy` in `namespace`, the cluster kinds with
/// `None`), untyped: objects go in as the JSON a user writes.
pub(crate) fn policy_api(
    client: &Client,
    kind: &str,
    namespace: Option<&str>,
) -> Api<kube::api::DynamicObject> {
    let gvk = kube::core::GroupVersionKind::gvk("security.kubearmor.com", "v1", kind);
    let ar = kube::api::ApiResource::from_gvk(&gvk);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Cluster policy `c-<i>`: a process rule for every namespace but `kube-system`.
pub(crate) fn cluster_policy(i: usize) -> kube::api::DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorClusterPolicy",
        "metadata": {"name": format!("c-{i}")},
        "spec": {"selector": {"matchExpressions": [{"key": "namespace", "operator": "NotIn",
                "values": ["kube-system"]}]},
            "process": {"matchPaths": [{"path": format!("/usr/local/bin/tool-{i}")}]},
            "action": "Block"}
    }))
    .expect("a cluster policy object")
}

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Applies the CRDs and waits until each is established.
pub(crate) async fn install_crds(client: &Client) {
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    for crd in armor_k8s::crd::crds() {
        api.create(&kube::api::PostParams::default(), &crd)
            .await
            .unwrap();
    }
    wait_crds_established(client).await;
}

/// Waits until the three CRDs are established (their kinds served).
pub(crate) async fn wait_crds_established(client: &Client) {
    let api: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for crd in armor_k8s::crd::crds() {
        let name = crd.metadata.name.clone().unwrap();
        let mut waited = Duration::ZERO;
        loop {
            let now = api.get(&name).await.unwrap();
            let established = now
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            assert!(waited < Duration::from_secs(30), "{name} not established");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += Duration::from_millis(100);
        }
    }
}

/// Waits until the policy `name` (of any of the three kinds) has status `want`; its message.
pub(crate) async fn status_of<K>(api: &Api<K>, name: &str, want: &str) -> Option<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    for<'a> &'a K: Into<armor_k8s::policies::PolicyObject>,
{
    for _ in 0..300 {
        let p = api.get(name).await.expect("the policy");
        let object: armor_k8s::policies::PolicyObject = (&p).into();
        if let Some(st) = object.status
            && st.status.as_deref() == Some(want)
        {
            return st.message;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never got status {want}");
}

/// A policy follower running as `client` ([`armor_k8s::watch::follow_policies`]): what it
/// enforced (rule counts, in order) and what it reported.
pub(crate) struct Follower {
    /// The rule count of every compiled policy handed over.
    pub(crate) enforced: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    /// Its reports (`Debug`).
    pub(crate) reports: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// How many of them were watch errors.
    pub(crate) watch_errors: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    /// Starts following the policies as `client`.
    pub(crate) fn start(client: Client) -> Self {
        let enforced = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let watch_errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (e, r, w) = (enforced.clone(), reports.clone(), watch_errors.clone());
        let task = tokio::spawn(async move {
            let mut index = armor_k8s::policies::PolicyIndex::new();
            armor_k8s::watch::follow_policies(
                client,
                &mut index,
                move |p| e.lock().expect("lock").push(p.rules().len()),
                move |report| {
                    if matches!(report, armor_k8s::watch::Report::WatchError(_)) {
                        w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    r.lock().expect("lock").push(format!("{report:?}"));
                },
            )
            .await;
        });
        Self {
            enforced,
            reports,
            watch_errors,
            task,
        }
    }

    /// The rule counts enforced so far, once there are at least `n`.
    pub(crate) async fn enforced_at_least(&self, n: usize, what: &str) -> Vec<usize> {
        for _ in 0..300 {
            let now = self.enforced.lock().expect("lock").clone();
            if now.len() >= n {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}
