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
    #[error("cannot connect to the container runtime at {path}: {source}")]
    Connect {
        path: String,
        source: tonic::transport::Error,
    },
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
    /// Connects to a CRI runtime's unix socket. The URI is a placeholder that gRPC
    /// needs syntactically; every connection goes to the socket.
    pub async fn connect(socket: &str) -> Result<Self> {
        let path = PathBuf::from(socket);
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel = Endpoint::from_static("http://cri.sock")
            .connect_with_connector(connector)
            .await
            .map_err(|source| CriError::Connect {
                path: socket.to_string(),
                source,
            })?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
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
    pub async fn pull_image(&self, image: &str) -> Result<String> {
        let resp = self
            .images
            .clone()
            .pull_image(v1::PullImageRequest {
                image: Some(image_spec(image)),
                auth: None,
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
