// Command kube-apiserver is the Kubernetes API server of k8s.io/kubernetes, built for the tests.
package main

import (
	"os"
	_ "time/tzdata" // CronJob timeZone needs the zone database

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
