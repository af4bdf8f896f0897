// Command etcd is the upstream etcd server, built from go.etcd.io/etcd/server/v3 so that the
// version Kubernetes pins is the version we run (the upstream binary's main is exactly this).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
