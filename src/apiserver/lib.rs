//! The Kubernetes API server: HTTPS with client-certificate authentication, generic
//! REST handlers over the resource registry, watch, discovery, and what it proxies:
//! pod logs, exec, attach and port-forward to kubelets, and `…/proxy` to pods,
//! services and nodes.
//! Objects are JSON values stored under upstream's etcd keys; an object's
//! resourceVersion is its key's mod revision.

mod admission;
mod allocator;
mod auth;
mod bootstrap;
mod cache;
pub mod compaction;
mod componentstatus;
mod crd;
mod discovery;
#[cfg(test)]
mod discovery_fixture;
mod eviction;
mod field_validation;
mod handlers;
mod kubelet;
mod kubernetes_endpoints;
mod logs;
mod mirror;
mod namespaces;
mod openapi;
mod priority;
mod proxy;
mod raw_list;
mod rbac;
mod recovery;
mod request;
mod reviews;
mod runtimeclass;
mod scale;
mod storageclass;
mod strategy;
mod streams;
mod system_objects;
pub mod tls;
mod watch;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
pub use rbac::defaults::{Policy, bootstrap_policy};
use request::{Query, Rendering, Target};
use rind_api::registry::{Registry, Storage};
use rind_api::status::ApiError;
use rind_runtime::{NodeConfig, paths};
use rind_store::Store;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
pub use tls::{ServeError, User};

/// The largest request body accepted, as upstream's 3 MiB limit (etcd's value limit is near).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// PEM material of a TLS identity.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA that signs the peers this identity talks to.
    pub ca_pem: String,
}

/// Everything the server needs besides its store and listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Serving certificate and key; `ca_pem` verifies client certificates.
    pub serving: TlsFiles,
    /// The client identity for kubelet calls (pod logs); `ca_pem` verifies kubelets.
    pub kubelet_client: Option<TlsFiles>,
    /// The service network; its first address is the `kubernetes` Service's ClusterIP.
    pub service_subnet: String,
    /// The PKCS#8 PEM key service-account tokens are signed with (`sa.key`); None
    /// makes a fresh one, whose tokens then die with the process.
    pub service_account_key: Option<String>,
    /// Runs the ServiceAccount admission plugin (upstream's default). Test servers
    /// without a controller manager turn it off, as upstream's integration tests do
    /// (`--disable-admission-plugins=ServiceAccount`): no `default` account appears
    /// in their namespaces.
    pub service_account_admission: bool,
    /// The name other API servers on the same store know this one by (its node's):
    /// the one that writes the defaults while they wait (`bootstrap::take_turn`).
    pub identity: String,
}

/// Shared state of all requests: no lock is held around store calls.
pub struct Server {
    store: Arc<dyn Store>,
    /// Shared store watches for client watches.
    watch_cache: cache::WatchCache,
    registry: Registry,
    openapi: openapi::Cache,
    kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    service_network: allocator::ServiceNetwork,
    auth: auth::Authenticator,
    rbac: rbac::Rbac,
    /// Creates check their namespace here rather than with a store read each.
    namespaces: Arc<mirror::Mirror<namespaces::NamespaceState>>,
    /// New pods get their priority from these (the Priority admission plugin).
    priority_classes: Arc<mirror::Mirror<priority::ClassState>>,
    /// The LimitRanger's and ResourceQuota admission's objects.
    limit_ranges: admission::Policies,
    resource_quotas: admission::Policies,
    /// The allocated ClusterIPs, for picking free ones without a store read each.
    ip_addresses: Arc<mirror::Mirror<Value>>,
    /// Whether new pods go through the ServiceAccount admission plugin.
    admit_service_accounts: bool,
}

/// A JSON response body with its status and content type.
pub struct Json {
    status: StatusCode,
    body: JsonBody,
    rendering: Rendering,
}

enum JsonBody {
    /// Written as upstream writes it (`rind_api::json`), newline included.
    Value(Value),
    /// Already serialized, newline included (see `raw_list`).
    Bytes(Vec<u8>),
}

/// What a Table response is labelled with, so kubectl knows it got what it asked for.
const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const METADATA_CONTENT_TYPE: &str =
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";

impl Json {
    pub fn ok(body: Value, rendering: Rendering) -> Self {
        Self::with_status(StatusCode::OK, body, rendering)
    }

    pub fn created(body: Value, rendering: Rendering) -> Self {
        Self::with_status(StatusCode::CREATED, body, rendering)
    }

    pub fn with_status(status: StatusCode, body: Value, rendering: Rendering) -> Self {
        Json {
            status,
            body: JsonBody::Value(body),
            rendering,
        }
    }

    /// A 200 whose body is JSON serialized already.
    pub fn raw(body: Vec<u8>, rendering: Rendering) -> Self {
        Self::bytes(StatusCode::OK, body, rendering)
    }

    /// A body serialized already, with `status`.
    pub fn bytes(status: StatusCode, body: Vec<u8>, rendering: Rendering) -> Self {
        Json {
            status,
            body: JsonBody::Bytes(body),
            rendering,
        }
    }

    /// The body as a `Value` (parsing it back when it was serialized already).
    #[cfg(test)]
    pub fn value(self) -> Value {
        match self.body {
            JsonBody::Value(value) => value,
            JsonBody::Bytes(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        }
    }
}

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        let content_type = match self.rendering {
            Rendering::Table => TABLE_CONTENT_TYPE,
            Rendering::Metadata => METADATA_CONTENT_TYPE,
            Rendering::Object => "application/json",
        };
        let body = match self.body {
            JsonBody::Value(value) => rind_api::json::to_body(&value),
            JsonBody::Bytes(bytes) => bytes,
        };
        (self.status, [(header::CONTENT_TYPE, content_type)], body).into_response()
    }
}

/// An error answered as upstream's `Status` body with its code (`ApiError` lives in
/// rind-api, which knows nothing of HTTP servers).
pub(crate) trait ErrorResponse {
    fn into_response(self) -> Response;
}

impl ErrorResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_status().to_body();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

impl Server {
    pub fn new(
        store: Arc<dyn Store>,
        kubelet_tls: Option<Arc<rustls::ClientConfig>>,
        service_network: allocator::ServiceNetwork,
        token_key: auth::token::TokenKey,
    ) -> Self {
        Server {
            watch_cache: cache::WatchCache::new(store.clone()),
            store,
            registry: Registry::default(),
            openapi: openapi::Cache::default(),
            kubelet_tls,
            service_network,
            auth: auth::Authenticator::new(token_key),
            rbac: rbac::Rbac::default(),
            namespaces: mirror::Mirror::new(namespaces::NAMESPACES),
            priority_classes: mirror::Mirror::new(priority::PRIORITY_CLASSES),
            limit_ranges: admission::Policies::new(admission::limitranger::LIMIT_RANGES),
            resource_quotas: admission::Policies::new(admission::quota::RESOURCE_QUOTAS),
            ip_addresses: mirror::Mirror::new(allocator::IP_ADDRESSES),
            admit_service_accounts: true,
        }
    }

    /// Answers one request; the accept loop has put the client's `User` (if its
    /// certificate named one) into the request's extensions.
    pub async fn handle(self: Arc<Self>, req: Request) -> Response {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let user = req.extensions().get::<User>().map(|u| u.name.clone());
        let response = recovery::catch_panic(&method, &uri, async move {
            match self.route(req).await {
                Ok(response) => response,
                Err(err) => err.into_response(),
            }
        })
        .await;
        tracing::debug!(
            %method,
            %uri,
            user = user.as_deref().unwrap_or("<anonymous>"),
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        response
    }

    async fn route(self: Arc<Self>, mut req: Request) -> Result<Response, ApiError> {
        #[cfg(test)]
        recovery::panic_if_asked(req.headers());
        // What the request does, read from its path alone, as upstream's request-info
        // filter does before anything else: the request deadline (outside
        // authentication, so a bad `?timeout=` is 400 even without credentials) and
        // authorization both go by it.
        let attributes = rbac::attributes(req.method(), req.uri());
        let deadline = match rbac::is_long_running(&attributes) {
            true => None,
            false => Some(request::deadline(req.uri())?),
        };
        // Bad credentials are a 401 on every path, public ones included, as upstream's
        // authentication filter runs before anything looks at the path. No credentials
        // is the anonymous user, authorized like any other: the probes and the version
        // answer it because bootstrap policy's system:public-info-viewer grants them
        // to system:unauthenticated, and an admin may bind it more (or less).
        let user = self
            .auth
            .authenticate(&self, req.headers(), req.extensions().get::<User>())
            .await?;
        let user = auth::impersonation::apply(&self.rbac, user, req.headers())?;
        // Upstream authorizes before it routes: who may not get a path learns 403, not
        // whether anything serves it.
        if !self.rbac.authorize(&user, &attributes).allowed {
            return Err(rbac::forbidden(&user, &attributes));
        }
        let target = match request::parse_path(&self.registry, req.uri().path()) {
            Ok(target) => target,
            Err(err) if err.code == 404 => return Ok(self.not_found(req.uri().path(), err)),
            Err(err) => return Err(err),
        };
        // Handlers (the reviews) see who the request acts as.
        req.extensions_mut().insert(user);
        let method = req.method().clone();
        // Health checks answer any method they are authorized for, as upstream's do.
        let any_method = matches!(
            target,
            Target::Resource(_) | Target::Health | Target::Ready | Target::Version
        );
        if method != Method::GET && !any_method {
            return Err(ApiError::method_not_supported("", "", method.as_str()));
        }
        match target {
            Target::Health => Ok(plain(StatusCode::OK, "ok")),
            Target::Ready => {
                // Not ready while the store does not answer: load balancers then skip us.
                let check = tokio::time::timeout(READY_TIMEOUT, self.store.revision()).await;
                Ok(match check {
                    Ok(Ok(_)) => plain(StatusCode::OK, "ok"),
                    Ok(Err(e)) => plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("[-]etcd failed: {e}\nreadyz check failed"),
                    ),
                    Err(_) => plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "[-]etcd failed: timed out\nreadyz check failed",
                    ),
                })
            }
            Target::Version => {
                Ok(Json::ok(discovery::version(), Rendering::Object).into_response())
            }
            Target::Api => Ok(discovery::root(&self.registry, req.headers(), true)),
            Target::Apis => Ok(discovery::root(&self.registry, req.headers(), false)),
            Target::Group(group) => Ok(match discovery::group(&self.registry, &group) {
                Ok(v) => Json::ok(v, Rendering::Object).into_response(),
                Err(err) => self.not_found(req.uri().path(), err),
            }),
            Target::GroupVersion { group, version } => Ok(
                match discovery::resource_list(&self.registry, &group, &version) {
                    Ok(v) => Json::ok(v, Rendering::Object).into_response(),
                    Err(err) => self.not_found(req.uri().path(), err),
                },
            ),
            Target::OpenApiV2 => Ok(openapi::serve_v2(
                &self.registry,
                &self.openapi,
                req.headers(),
            )),
            Target::OpenApiRoot => Ok(openapi::serve_root(&self.registry, &self.openapi)),
            Target::OpenApi(path) => openapi::serve_group_version(
                &self.registry,
                &self.openapi,
                &path,
                req.uri().query(),
                req.headers(),
            ),
            Target::Resource(r) => {
                let Some(deadline) = deadline else {
                    return self.resource(r, req).await;
                };
                // As upstream's timeout filter: past the deadline the client hears 504
                // while the request itself runs to its end, so nothing is left half done.
                let handling = tokio::spawn(self.clone().resource(r, req));
                match tokio::time::timeout(deadline, handling).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(failed)) if failed.is_panic() => {
                        std::panic::resume_unwind(failed.into_panic())
                    }
                    Ok(Err(failed)) => Err(ApiError::internal(failed.to_string())),
                    Err(_) => Err(ApiError::deadline_exceeded()),
                }
            }
        }
    }

    async fn resource(
        self: Arc<Self>,
        r: request::ResourceRequest,
        req: Request,
    ) -> Result<Response, ApiError> {
        // Connect subresources hand the connection on, body and upgrade included.
        match r.subresource.as_deref() {
            Some("proxy") if r.resource.connects("proxy") => {
                return proxy::serve(&self, &r, req).await;
            }
            Some(sub) if r.resource.connects(sub) => return streams::serve(&self, &r, req).await,
            _ => {}
        }
        let query = Query::parse(req.uri())?.with_user_agent(req.headers());
        let rendering = request::rendering(
            req.headers(),
            r.resource.renders_tables(r.subresource.as_deref()),
        )?;
        request::check_table_options(&query, rendering)?;
        let body_type = request::body_type(req.headers());
        let method = req.method().clone();
        let user = req.extensions().get::<User>().cloned();
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| ApiError::too_large(MAX_BODY))?;
        let res = r.resource;
        let ns = r.namespace.as_deref();
        let sub = r.subresource.as_deref();
        let decoded = |kind: request::BodyType| request::decode_body(&body, kind);
        // Bodies whose unknown and duplicate fields are checked: the raw body goes along
        // only when a field is set twice, to name it.
        let checked = |kind: request::BodyType| {
            let (value, duplicated) = request::decode_body_noting_duplicates(&body, kind)?;
            let sent = field_validation::Sent {
                raw: &body[..],
                duplicated,
            };
            Ok::<_, ApiError>((value, Some(sent)))
        };
        // Unknown fields the client should hear about (`fieldValidation=Warn`).
        let mut warnings = Vec::new();
        if res.storage == Storage::Observed {
            let ctx = handlers::Ctx::new(&self, res, ns, rendering, &query);
            let watching = r.watch_path || query.flag("watch");
            let answer = match (&method, r.name.as_deref(), sub) {
                (&Method::GET, name, None) if !watching => componentstatus::get(&ctx, name).await?,
                _ => {
                    return Err(ApiError::method_not_supported(
                        res.plural,
                        res.group,
                        method.as_str(),
                    ));
                }
            };
            let mut response = answer.into_response();
            field_validation::add_warnings(&mut response, &[componentstatus::DEPRECATION.into()]);
            return Ok(response);
        }
        if res.storage == Storage::NotStored {
            // Reviews only answer a create: there is nothing to get, list or watch.
            let user = user.ok_or_else(ApiError::unauthorized)?;
            return match (&method, r.name.as_deref(), sub) {
                (&Method::POST, None, None) if res.kind == "TokenReview" => Ok(self
                    .auth
                    .token_review(&self, res, decoded(body_type?)?)
                    .await?
                    .into_response()),
                (&Method::POST, None, None) => {
                    Ok(
                        reviews::create(&self.rbac, res, ns, &user, decoded(body_type?)?)?
                            .into_response(),
                    )
                }
                _ => Err(ApiError::method_not_supported(
                    res.plural,
                    res.group,
                    method.as_str(),
                )),
            };
        }
        let ctx = handlers::Ctx::new(&self, res, ns, rendering, &query).with_user(user.as_ref());
        // Writes validate their options' `dryRun` before anything else; a DELETE's
        // options may come in its body, and are checked where they are read.
        let options_kind = match method {
            Method::POST => Some("CreateOptions"),
            Method::PUT => Some("UpdateOptions"),
            Method::PATCH => Some("PatchOptions"),
            _ => None,
        };
        if let Some(kind) = options_kind {
            request::check_dry_run(&query.values("dryRun"), kind)?;
        }
        let response = match (&method, r.name.as_deref(), sub) {
            (&Method::GET, None, None) if r.watch_path || query.flag("watch") => {
                return watch::serve(self.clone(), res, ns, None, rendering, &query).await;
            }
            (&Method::GET, Some(name), None) if r.watch_path || query.flag("watch") => {
                return watch::serve(self.clone(), res, ns, Some(name), rendering, &query).await;
            }
            (&Method::GET, None, None) => handlers::list(&ctx).await?,
            (&Method::GET, Some(name), Some("scale")) => scale::get(&self, res, ns, name).await?,
            (&Method::PUT, Some(name), Some("scale")) => {
                let request = scale::ScaleWrite::Replace(decoded(body_type?)?);
                scale::write(&self, res, ns, name, request, &query).await?
            }
            (&Method::PATCH, Some(name), Some("scale")) => {
                let kind = body_type?;
                let request = scale::ScaleWrite::Patch(decoded(kind)?, kind);
                scale::write(&self, res, ns, name, request, &query).await?
            }
            (
                &Method::GET,
                Some(name),
                None | Some("status" | "ephemeralcontainers" | "approval"),
            ) => handlers::get(&ctx, name).await?,
            (&Method::GET, Some(name), Some("log")) => {
                return logs::proxy(&self, res, ns, name, &query).await;
            }
            (&Method::POST, None, None) => {
                let (mut object, duplicated) = checked(body_type?)?;
                warnings = field_validation::check_object(res, duplicated, &mut object, &query)?;
                handlers::create(&ctx, object).await?
            }
            (&Method::POST, Some(name), Some("eviction")) => {
                eviction::evict(&self, res, ns, name, decoded(body_type?)?, &query).await?
            }
            (&Method::POST, Some(name), Some("token")) => {
                let namespace = ns.unwrap_or_default();
                let request = decoded(body_type?)?;
                self.auth
                    .token_request(&self, namespace, name, request)
                    .await?
            }
            (&Method::POST, Some(name), Some("binding")) => {
                handlers::bind(&ctx, name, decoded(body_type?)?).await?
            }
            (
                &Method::PUT,
                Some(name),
                None | Some("status" | "finalize" | "ephemeralcontainers" | "approval"),
            ) => {
                let (mut object, duplicated) = checked(body_type?)?;
                warnings = field_validation::check_object(res, duplicated, &mut object, &query)?;
                handlers::update(&ctx, name, sub, object).await?
            }
            (
                &Method::PATCH,
                Some(name),
                None | Some("status" | "ephemeralcontainers" | "approval"),
            ) => {
                let kind = body_type?;
                let (patch, duplicated) = checked(kind)?;
                let check =
                    field_validation::check_patch(res, name, duplicated, &patch, kind, &query)?;
                warnings = check.warnings;
                let body = handlers::PatchBody {
                    patch,
                    kind,
                    adds_known_fields_only: check.adds_known_fields_only,
                };
                handlers::patch(&ctx, name, sub, body).await?
            }
            (&Method::DELETE, Some(name), None) => {
                let options = Self::delete_options(&body, &query)?;
                let response = handlers::delete(&ctx, name, options).await?;
                ctx.strategy.after_delete(&self, name);
                response
            }
            (&Method::DELETE, None, None) if res.verbs.contains(&"deletecollection") => {
                let options = Self::delete_options(&body, &query)?;
                handlers::delete_collection(&ctx, options).await?
            }
            _ => {
                return Err(ApiError::method_not_supported(
                    res.plural,
                    res.group,
                    method.as_str(),
                ));
            }
        };
        let writes_object = sub.is_none()
            && matches!(method, Method::POST | Method::PUT | Method::PATCH)
            && !(method == Method::POST && r.name.is_some());
        if writes_object && let Some(warning) = ctx.strategy.write_warning(res.kind) {
            warnings.push(warning);
        }
        let mut response = response.into_response();
        field_validation::add_warnings(&mut response, &warnings);
        Ok(response)
    }

    /// What upstream answers for a path nothing serves. Its go-restful web services,
    /// the core group's under `/api` and each built-in group's under `/apis/G`, answer
    /// with `not_found`, a NotFound Status; any other path (an unknown group, a custom
    /// group's unknown version or resource, a path outside the API) falls through the
    /// delegation chain to Go's `http.NotFound`, a plain-text 404.
    fn not_found(&self, path: &str, not_found: ApiError) -> Response {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let restful = match parts.as_slice() {
            ["api", ..] => true,
            ["apis", group, rest @ ..] => {
                self.registry.is_builtin_group(group)
                    || match rest {
                        [version, "namespaces", _, plural, ..] | [version, plural, ..] => {
                            self.registry.lookup(group, version, plural).is_some()
                        }
                        _ => false,
                    }
            }
            _ => false,
        };
        if restful {
            return not_found.into_response();
        }
        let mut response = plain(StatusCode::NOT_FOUND, "404 page not found\n");
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        response
    }

    /// `DeleteOptions` may come as a body (maybe without kind or Content-Type) or not at all.
    fn delete_options(body: &Bytes, query: &Query) -> Result<handlers::DeleteOptions, ApiError> {
        let parsed = if body.is_empty() {
            None
        } else {
            Some(request::decode_body(body, request::BodyType::Yaml)?)
        };
        handlers::DeleteOptions::from_request(parsed.as_ref(), query)
    }
}

/// Serves the API on `listener` until the listener fails; bootstraps the system
/// namespaces and the `kubernetes` Service first.
pub async fn serve(
    config: ServerConfig,
    store: Arc<dyn Store>,
    listener: tokio::net::TcpListener,
) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let acceptor = tls::acceptor(&config.serving)?;
    let kubelet_tls = config
        .kubelet_client
        .as_ref()
        .map(tls::client_config)
        .transpose()?;
    let network = allocator::ServiceNetwork::parse(&config.service_subnet)?;
    let key_pem = match &config.service_account_key {
        Some(pem) => pem.clone(),
        None => rcgen::KeyPair::generate()
            .map_err(|e| ServeError::Bootstrap(format!("making a service-account key: {e}")))?
            .serialize_pem(),
    };
    let token_key = auth::token::TokenKey::from_pem(&key_pem)?;
    let mut server = Server::new(store.clone(), kubelet_tls, network, token_key);
    server.admit_service_accounts = config.service_account_admission;
    let server = Arc::new(server);
    server
        .ip_addresses
        .start(store.clone())
        .await
        .map_err(|e| ServeError::Bootstrap(e.to_string()))?;
    bootstrap::ensure_defaults(&server, &config.identity)
        .await
        .map_err(|e| ServeError::Bootstrap(e.message))?;
    // Services stored before ClusterIPs were recorded as IPAddresses get theirs before
    // any new Service can be given one of their addresses.
    allocator::repair(&server, false)
        .await
        .map_err(|e| ServeError::Bootstrap(e.message))?;
    tokio::spawn(allocator::run_repair(server.clone()));
    // Requests are authorized from these mirrors: fill them (side by side, each is a
    // list and a watch) before serving any.
    futures::try_join!(
        server.rbac.start(store.clone()),
        server.auth.start(store.clone()),
        server.namespaces.start(store.clone()),
        server.priority_classes.start(store.clone()),
        server.limit_ranges.start(store.clone()),
        server.resource_quotas.start(store.clone()),
    )
    .map_err(|e| ServeError::Bootstrap(e.to_string()))?;
    namespaces::resume_all(&server)
        .await
        .map_err(|e| ServeError::Bootstrap(e.message))?;
    let revision = crd::load(&server)
        .await
        .map_err(|e| ServeError::Bootstrap(e.message))?;
    tokio::spawn(crd::run(server.clone(), revision));
    // Connections wait in the listen queue until now: how long a load balancer's checks
    // and every component saw this server as slow.
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "defaults stored and mirrors filled; serving"
    );
    tls::accept_loop(listener, acceptor, server).await
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// How long the API server waits for etcd on start before giving up.
const ETCD_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the apiserver inside a node, configured from the node's files.
pub async fn run_node(cfg: &NodeConfig) -> anyhow::Result<()> {
    // RIND_LOG=debug adds one line per request.
    rind_runtime::logging::init("info");
    let serving = TlsFiles {
        cert_pem: read(paths::APISERVER_CRT)?,
        key_pem: read(paths::APISERVER_KEY)?,
        ca_pem: read(paths::CA_CRT)?,
    };
    let kubelet_client = TlsFiles {
        cert_pem: read(paths::APISERVER_KUBELET_CLIENT_CRT)?,
        key_pem: read(paths::APISERVER_KUBELET_CLIENT_KEY)?,
        ca_pem: read(paths::CA_CRT)?,
    };
    let store = connect_etcd().await?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", paths::APISERVER_PORT))
        .await
        .with_context(|| format!("binding the API port {}", paths::APISERVER_PORT))?;
    tracing::info!(port = paths::APISERVER_PORT, "apiserver listening");
    let config = ServerConfig {
        serving,
        kubelet_client: Some(kubelet_client),
        service_subnet: cfg.service_subnet.clone(),
        service_account_key: Some(read(paths::SA_KEY)?),
        service_account_admission: true,
        identity: cfg.node_name.clone(),
    };
    tokio::spawn(compaction::run(store.clone(), compaction::INTERVAL));
    tokio::spawn(kubernetes_endpoints::run(
        cfg.node_ip.clone(),
        paths::APISERVER_PORT,
    ));
    serve(config, store, listener)
        .await
        .context("serving the API")
}

/// Connects to the node's etcd, retrying until it answers or the deadline passes
/// (etcd starts alongside the API server).
async fn connect_etcd() -> anyhow::Result<Arc<dyn Store>> {
    use rind_store::{EtcdStore, EtcdTls};
    let ca_pem = read(paths::ETCD_CA_CRT)?;
    let cert_pem = read(paths::APISERVER_ETCD_CLIENT_CRT)?;
    let key_pem = read(paths::APISERVER_ETCD_CLIENT_KEY)?;
    let tls = || EtcdTls {
        ca_pem: ca_pem.clone().into_bytes(),
        cert_pem: cert_pem.clone().into_bytes(),
        key_pem: key_pem.clone().into_bytes(),
    };
    let endpoints = vec![format!("https://127.0.0.1:{}", paths::ETCD_CLIENT_PORT)];
    let deadline = tokio::time::Instant::now() + ETCD_DEADLINE;
    // The last reason logged: a poll every 100 ms would otherwise log ten lines a second
    // while etcd waits for its peers.
    let mut logged = String::new();
    loop {
        let failure = match EtcdStore::connect(&endpoints, Some(tls())).await {
            Ok(store) => match store.revision().await {
                Ok(_) => return Ok(store),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e).context("etcd did not become ready");
                }
                Err(e) => e.to_string(),
            },
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).context("connecting to etcd");
            }
            Err(e) => e.to_string(),
        };
        if failure != logged {
            tracing::info!("waiting for etcd: {failure}");
            logged = failure;
        }
        // etcd answers within moments of electing a leader, and everything in the
        // cluster waits on this server: a short poll, not a back-off.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response()
}

/// Response bodies for streams (watch, logs).
pub fn stream_response(content_type: &'static str, body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
