# Conveniences for `docker exec -it <node> bash -l` in a rind node.
# ctr shows the images and containers of Kubernetes pods, not containerd's default namespace.
export CONTAINERD_NAMESPACE=k8s.io
# etcdctl talks to the node's etcd over TLS with the API server's client certificate.
export ETCDCTL_API=3
export ETCDCTL_ENDPOINTS=https://127.0.0.1:2379
export ETCDCTL_CACERT=/etc/kubernetes/pki/etcd/ca.crt
export ETCDCTL_CERT=/etc/kubernetes/pki/apiserver-etcd-client.crt
export ETCDCTL_KEY=/etc/kubernetes/pki/apiserver-etcd-client.key
