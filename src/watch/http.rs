//! The HTTP listener of `rekindle run` (`http_listen`): `/metrics` for Prometheus and the
//! `/healthz` and `/readyz` probes, served by hyper on the daemon's own runtime.
//!
//! Off unless `[DEFAULT] http_listen` (or `--http-listen`) names an address.
//! Nothing here changes the service: every answer is read off the status
//! board, the metrics, or one message to the controller (liveness).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use thiserror::Error;

use crate::actors::Handles;
use crate::lifecycle::StateName;
use crate::watch::metrics::{Format, Metrics};

/// How long `/healthz` waits for the controller to answer.
pub const LIVENESS_DEADLINE: Duration = Duration::from_secs(1);

/// The listener could not be set up.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The address cannot be bound (in use, not this host's, no permission).
    #[error("http_listen {address}: cannot listen there: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound listener, not serving yet (bind first, so a start-up that cannot
/// listen stops before anything runs).
pub struct HttpListener {
    address: SocketAddr,
    listener: std::net::TcpListener,
}

/// A listener being served; dropping it does not stop it ([`Serving::stop`] does).
pub struct Serving {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting (connections already open finish their request).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl HttpListener {
    /// Binds `address` (port 0: any free port).
    ///
    /// # Errors
    /// [`HttpError::Bind`], naming the address and the cause.
    pub fn bind(address: SocketAddr) -> Result<HttpListener, HttpError> {
        let bind = |source| HttpError::Bind { address, source };
        let listener = std::net::TcpListener::bind(address).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        Ok(HttpListener { address, listener })
    }

    /// The address bound (the port chosen, for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves the probes and `metrics` until stopped. Call inside the
    /// actix system.
    ///
    /// # Errors
    /// The bound socket cannot be registered with the runtime.
    pub fn serve(self, handles: Handles, metrics: Rc<Metrics>) -> Result<Serving, HttpError> {
        let address = self.address;
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|source| HttpError::Bind { address, source })?;
        let task = actix::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, %address, "http_listen: accept failed");
                        actix::clock::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (handles, metrics) = (handles.clone(), metrics.clone());
                actix::spawn(async move {
                    let service = service_fn(move |request| {
                        let (handles, metrics) = (handles.clone(), metrics.clone());
                        async move { Ok::<_, Infallible>(answer(request, &handles, &metrics).await) }
                    });
                    if let Err(error) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%error, "http_listen: connection ended");
                    }
                });
            }
        });
        tracing::info!(%address, "serving /metrics, /healthz and /readyz");
        Ok(Serving { address, task })
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", format!("{body}\n"))
}

async fn answer(
    request: Request<Incoming>,
    handles: &Handles,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": format!("{} {}: only GET is served", request.method(), request.uri().path())}),
        );
    }
    match request.uri().path() {
        "/metrics" => {
            let accept = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            respond(
                StatusCode::OK,
                format.content_type(),
                metrics.render(format),
            )
        }
        "/healthz" => liveness(handles).await,
        "/readyz" => readiness(handles, request.uri().query()),
        path => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("{path}: not served (try /metrics, /healthz, /readyz)")}),
        ),
    }
}

/// 200 while the controller answers within [`LIVENESS_DEADLINE`].
async fn liveness(handles: &Handles) -> Response<Full<Bytes>> {
    let asked = handles.controller.send(crate::actors::controller::GetPlan);
    match tokio::time::timeout(LIVENESS_DEADLINE, asked).await {
        Ok(Ok(_)) => json_response(StatusCode::OK, json!({"alive": true})),
        Ok(Err(_)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"alive": false, "reason": "the service's controller has stopped"}),
        ),
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"alive": false, "reason": format!("the service's controller did not answer within {}", humantime::format_duration(LIVENESS_DEADLINE))}),
        ),
    }
}

/// 200 when every backend (or the one `?backend=NAME` names) is Ready,
/// else 503 naming each that is not and why.
fn readiness(handles: &Handles, query: Option<&str>) -> Response<Full<Bytes>> {
    let wanted = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("backend="))
            .map(str::to_string)
    });
    let mut backends = handles.shell.board.backends();
    if let Some(name) = &wanted {
        backends.retain(|b| &b.name == name);
        if backends.is_empty() {
            let known: Vec<String> = handles
                .shell
                .board
                .backends()
                .into_iter()
                .map(|b| b.name)
                .collect();
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no backend {name:?} (known: {})", known.join(", "))}),
            );
        }
    }
    let not_ready: Vec<serde_json::Value> = backends
        .iter()
        .filter(|b| b.state != StateName::Ready)
        .map(|b| {
            let reason = match (&b.last_error, b.gave_up) {
                (Some(error), true) => format!("{error} (gave up: waits for a reload)"),
                (Some(error), false) => error.clone(),
                (None, _) => format!("{} (not Ready yet)", b.state),
            };
            json!({
                "backend": b.name,
                "kind": b.kind.as_str(),
                "state": b.state.as_str(),
                "reason": reason,
                "next_retry": b.next_retry,
            })
        })
        .collect();
    if backends.is_empty() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": "no backend is running yet"}),
        );
    }
    if not_ready.is_empty() {
        json_response(StatusCode::OK, json!({"ready": true}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "not_ready": not_ready}),
        )
    }
}
