//! The Container Runtime Interface v1 client: generated gRPC stubs plus a connection to
//! the runtime's unix socket, and the few calls the kubelet makes wrapped so that the
//! rest of the kubelet never builds raw requests.

use std::collections::HashMap;
use std::path::PathBuf;
use tonic::transport::{Channel, Endpoint, Uri};

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

use v1::image_service_client::ImageServiceClient;
use v1::runtime_service_client::RuntimeServiceClient;

/// Labels the kubelet puts on every sandbox and container, with the names the real
/// kubelet uses, so `crictl` users find them and a restarted kubelet can adopt them.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("container runtime call {call} failed: {source}")]
    Call {
        call: &'static str,
        source: Box<tonic::Status>,
    },
    #[error("container runtime returned no {what}")]
    Missing { what: &'static str },
}

type Result<T> = std::result::Result<T, CriError>;

fn call_err(call: &'static str) -> impl FnOnce(tonic::Status) -> CriError {
    move |source| CriError::Call {
        call,
        source: Box::new(source),
    }
}

/// A connection to the runtime and image services over one gRPC channel.
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    /// A client of a CRI runtime's unix socket. The channel connects lazily and
    /// reconnects by itself, so a runtime that starts later or restarts is picked up.
    /// The URI is a placeholder gRPC needs syntactically; every connection goes to the
    /// socket.
    pub fn new(socket: &str) -> Self {
        let path = PathBuf::from(socket);
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel =
            Endpoint::from_static("http://cri.sock").connect_with_connector_lazy(connector);
        Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    pub async fn version(&self) -> Result<v1::VersionResponse> {
        let req = v1::VersionRequest {
            version: "v1".into(),
        };
        let resp = self.runtime.clone().version(req).await;
        Ok(resp.map_err(call_err("Version"))?.into_inner())
    }

    /// Every sandbox carrying the kubelet's pod labels.
    pub async fn list_sandboxes(&self) -> Result<Vec<v1::PodSandbox>> {
        let resp = self
            .runtime
            .clone()
            .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
            .await
            .map_err(call_err("ListPodSandbox"))?;
        Ok(resp
            .into_inner()
            .items
            .into_iter()
            .filter(|s| s.labels.contains_key(LABEL_POD_UID))
            .collect())
    }

    pub async fn list_containers(&self) -> Result<Vec<v1::Container>> {
        let resp = self
            .runtime
            .clone()
            .list_containers(v1::ListContainersRequest { filter: None })
            .await
            .map_err(call_err("ListContainers"))?;
        Ok(resp
            .into_inner()
            .containers
            .into_iter()
            .filter(|c| c.labels.contains_key(LABEL_POD_UID))
            .collect())
    }

    /// The running instances of one pod's container, filtered by the runtime itself
    /// (an exec or attach then costs no listing of every container on the node).
    pub async fn running_containers_of(
        &self,
        pod_uid: &str,
        container: &str,
    ) -> Result<Vec<v1::Container>> {
        let filter = v1::ContainerFilter {
            state: Some(v1::ContainerStateValue {
                state: v1::ContainerState::ContainerRunning as i32,
            }),
            label_selector: [
                (LABEL_POD_UID.to_string(), pod_uid.to_string()),
                (LABEL_CONTAINER_NAME.to_string(), container.to_string()),
            ]
            .into(),
            ..v1::ContainerFilter::default()
        };
        let resp = self
            .runtime
            .clone()
            .list_containers(v1::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .map_err(call_err("ListContainers"))?;
        Ok(resp.into_inner().containers)
    }

    pub async fn run_sandbox(&self, config: v1::PodSandboxConfig) -> Result<String> {
        let resp = self
            .runtime
            .clone()
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map_err(call_err("RunPodSandbox"))?;
        Ok(resp.into_inner().pod_sandbox_id)
    }

    pub async fn sandbox_status(&self, id: &str) -> Result<v1::PodSandboxStatus> {
        let resp = self
            .runtime
            .clone()
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .map_err(call_err("PodSandboxStatus"))?;
        resp.into_inner().status.ok_or(CriError::Missing {
            what: "sandbox status",
        })
    }

    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await
            .map_err(call_err("StopPodSandbox"))?;
        Ok(())
    }

    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await
            .map_err(call_err("RemovePodSandbox"))?;
        Ok(())
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: v1::ContainerConfig,
        sandbox_config: v1::PodSandboxConfig,
    ) -> Result<String> {
        let resp = self
            .runtime
            .clone()
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .map_err(call_err("CreateContainer"))?;
        Ok(resp.into_inner().container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .start_container(v1::StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .map_err(call_err("StartContainer"))?;
        Ok(())
    }

    pub async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        self.runtime
            .clone()
            .stop_container(v1::StopContainerRequest {
                container_id: id.to_string(),
                timeout: timeout_seconds,
            })
            .await
            .map_err(call_err("StopContainer"))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_container(v1::RemoveContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .map_err(call_err("RemoveContainer"))?;
        Ok(())
    }

    pub async fn container_status(&self, id: &str) -> Result<v1::ContainerStatus> {
        let resp = self
            .runtime
            .clone()
            .container_status(v1::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .map_err(call_err("ContainerStatus"))?;
        resp.into_inner().status.ok_or(CriError::Missing {
            what: "container status",
        })
    }

    /// Runs a command in a running container and waits for it, as probes and lifecycle
    /// hooks do; `timeout_seconds` 0 means no limit on the runtime's side.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<v1::ExecSyncResponse> {
        let resp = self
            .runtime
            .clone()
            .exec_sync(v1::ExecSyncRequest {
                container_id: id.to_string(),
                cmd,
                timeout: timeout_seconds,
            })
            .await
            .map_err(call_err("ExecSync"))?;
        Ok(resp.into_inner())
    }

    /// The runtime's own view of its health: `RuntimeReady` and `NetworkReady`.
    pub async fn status(&self) -> Result<v1::RuntimeStatus> {
        let resp = self
            .runtime
            .clone()
            .status(v1::StatusRequest { verbose: false })
            .await
            .map_err(call_err("Status"))?;
        resp.into_inner().status.ok_or(CriError::Missing {
            what: "runtime status",
        })
    }

    /// A one-shot URL on the runtime's streaming server that runs `request`'s command in
    /// its container once a client connects to it.
    pub async fn exec(&self, request: v1::ExecRequest) -> Result<String> {
        let resp = self
            .runtime
            .clone()
            .exec(request)
            .await
            .map_err(call_err("Exec"))?;
        Ok(resp.into_inner().url)
    }

    /// A one-shot URL on the runtime's streaming server attached to a running
    /// container's standard streams.
    pub async fn attach(&self, request: v1::AttachRequest) -> Result<String> {
        let resp = self
            .runtime
            .clone()
            .attach(request)
            .await
            .map_err(call_err("Attach"))?;
        Ok(resp.into_inner().url)
    }

    /// A one-shot URL on the runtime's streaming server that forwards connections to
    /// ports inside the sandbox's network namespace.
    pub async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> Result<String> {
        let resp = self
            .runtime
            .clone()
            .port_forward(v1::PortForwardRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                port: ports,
            })
            .await
            .map_err(call_err("PortForward"))?;
        Ok(resp.into_inner().url)
    }

    /// The image's status, or `None` when the runtime does not hold it.
    pub async fn image_status(&self, image: &str) -> Result<Option<v1::Image>> {
        let resp = self
            .images
            .clone()
            .image_status(v1::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .map_err(call_err("ImageStatus"))?;
        Ok(resp.into_inner().image)
    }

    /// Pulls an image and returns its reference.
    pub async fn pull_image(&self, image: &str, auth: Option<v1::AuthConfig>) -> Result<String> {
        let resp = self
            .images
            .clone()
            .pull_image(v1::PullImageRequest {
                image: Some(image_spec(image)),
                auth,
                sandbox_config: None,
            })
            .await
            .map_err(call_err("PullImage"))?;
        Ok(resp.into_inner().image_ref)
    }
}

fn image_spec(image: &str) -> v1::ImageSpec {
    v1::ImageSpec {
        image: image.to_string(),
        annotations: HashMap::new(),
        user_specified_image: image.to_string(),
        runtime_handler: String::new(),
        image_ref: String::new(),
    }
}

/// Runs against a real CRI runtime: `RIND_CRI_SOCKET=/run/containerd/containerd.sock
/// RIND_CRI_IMAGE=<loaded image with sh> cargo test cri::tests -- --ignored`, e.g. inside
/// a node container. It runs one sandbox and one container and removes them.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    #[ignore = "needs a CRI runtime socket"]
    async fn sandbox_and_container_round_trip() {
        let socket = std::env::var("RIND_CRI_SOCKET").unwrap();
        let image = std::env::var("RIND_CRI_IMAGE").unwrap();
        let cri = Cri::new(&socket);
        let version = cri.version().await.unwrap();
        assert!(!version.runtime_version.is_empty());
        assert!(cri.image_status(&image).await.unwrap().is_some());
        assert!(
            cri.image_status("example.invalid/none:1")
                .await
                .unwrap()
                .is_none()
        );

        let uid = uuid::Uuid::new_v4().to_string();
        let log_dir = format!("/tmp/cri-test-{uid}");
        // Not the kubelet's pod labels: a kubelet test running alongside would
        // rightly remove a labelled sandbox it has no pod for.
        let labels = HashMap::from([("rind.test/uid".to_string(), uid.clone())]);
        let sandbox_config = v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "crit".into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "crit".into(),
            log_directory: log_dir.clone(),
            labels: labels.clone(),
            ..v1::PodSandboxConfig::default()
        };
        let sandbox = cri.run_sandbox(sandbox_config.clone()).await.unwrap();
        let status = cri.sandbox_status(&sandbox).await.unwrap();
        assert_eq!(status.state, v1::PodSandboxState::SandboxReady as i32);
        // Sandboxes without the kubelet's labels are not the kubelet's business.
        let listed = cri.list_sandboxes().await.unwrap();
        assert!(!listed.iter().any(|s| s.id == sandbox));

        let config = v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(image_spec(&image)),
            command: vec!["sh".into(), "-c".into(), "echo hello from rind".into()],
            labels,
            log_path: "c/0.log".into(),
            ..v1::ContainerConfig::default()
        };
        let id = cri
            .create_container(&sandbox, config, sandbox_config)
            .await
            .unwrap();
        cri.start_container(&id).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let exited = loop {
            let st = cri.container_status(&id).await.unwrap();
            if st.state == v1::ContainerState::ContainerExited as i32 {
                break st;
            }
            assert!(Instant::now() < deadline, "container did not exit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(exited.exit_code, 0);
        assert!(!exited.image_ref.is_empty() || !exited.image_id.is_empty());
        let log = std::fs::read_to_string(format!("{log_dir}/c/0.log")).unwrap();
        assert!(log.contains(" stdout F hello from rind"), "{log}");

        cri.stop_sandbox(&sandbox).await.unwrap();
        cri.remove_sandbox(&sandbox).await.unwrap();
        assert!(
            !cri.list_containers()
                .await
                .unwrap()
                .iter()
                .any(|c| c.id == id)
        );
        std::fs::remove_dir_all(&log_dir).unwrap();
    }
}
