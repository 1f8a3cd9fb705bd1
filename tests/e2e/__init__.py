"""End-to-end checks of a deployed platform, used by the molecule `full` scenario.

The scenario needs network (k3s, the SEEK, MySQL and Solr images), so it runs in users' CI;
the checks themselves are plain Python, unit tested here against recorded outputs, a local HTTP
server and the control plane built from the Kubernetes Go modules."""
