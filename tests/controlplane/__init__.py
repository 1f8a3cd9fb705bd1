"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for the tests.

See docs/testing-controlplane.md. Python API: `cluster.ControlPlane`, `cluster.build`;
pytest fixture: `kube_api` (tests/controlplane/fixture.py); command line:
`python -m tests.controlplane build|start|stop|status|env`.
"""
